"""Optimisation of strategy parameters with Optuna (issue 8, §4; docs/strategies.md, "Optimisation").

``space`` (search space from the parameter schema) → ``windows`` (in-sample / out-of-sample,
walk-forward) → ``evaluate`` (one trial: backtest + objective) on a ``pool`` of processes →
``study`` (storage, samplers, ask-and-tell) → ``run`` (the whole optimisation and its report).
``service``, ``job``, ``router`` and ``cli`` are the platform's edges.
"""
