"""Strategies: one interface for the backtester and live runs (docs/strategies.md).

* ``base``: the interface — :class:`SignalStrategy` (vectorised entry/exit signals over whole
  arrays, the fast path) and :class:`EventStrategy` (``on_bar``, ``on_fill``… callbacks);
* ``indicators``: TA-Lib wiring and crossovers;
* ``builtins``: SMA/EMA crossover, RSI mean reversion, Bollinger breakout, MACD, grid, DCA;
* ``rules``: the declarative JSON rule language users write, compiled to a signal strategy;
* ``catalog``: built-ins and operator plugins (entry point group ``tradepilot.strategies``);
* ``backtest``: the backtester (fast vectorised path and the event-driven broker), its report.
"""
