"""One trial: the strategy with some parameters, backtested on a slice of the bars, scored.

Runs in worker processes (``pool.py``), so it takes and returns plain data. The objective is
one of the shared metrics (``portfolio.metrics``), the same figures a backtest's summary
shows. A trial is *feasible* when its parameters are valid together, it closed at least
``min_trades`` trades and its objective is a finite number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tradepilot.portfolio import metrics
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import build_strategy

Objective = Literal["sharpe", "sortino", "total_return", "calmar"]
OBJECTIVES: tuple[Objective, ...] = ("sharpe", "sortino", "total_return", "calmar")
Outcome = Literal["complete", "infeasible", "invalid"]


@dataclass(frozen=True)
class Problem:
    """What every trial of one optimisation shares: the strategy, the bars, the settings."""

    strategy: str
    base_params: dict[str, Any]
    series: list[Bars]
    config: BacktestConfig
    objective: Objective
    min_trades: int
    timeframe: str | None = None


@dataclass
class TrialResult:
    params: dict[str, Any]
    outcome: Outcome
    value: float | None = None
    trades: int = 0
    reason: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def trial_metrics(equity: np.ndarray, periods_per_year: float) -> dict[str, float | None]:
    """The figures a trial is judged by, from the shared metric functions with the arguments
    ``performance_report`` gives them (so they equal a backtest summary's), without the rest
    of the report — its rolling figures cost ten times the backtest itself."""
    raw = metrics.simple_returns(equity)
    r = raw[np.isfinite(raw)]
    return {"sharpe": _finite(metrics.sharpe_ratio(r, 0.0, periods_per_year)),
            "sortino": _finite(metrics.sortino_ratio(r, 0.0, periods_per_year)),
            "calmar": _finite(metrics.calmar_ratio(r, periods_per_year)),
            "total_return": _finite(metrics.cumulative_return(r)),
            "max_drawdown": _finite(metrics.max_drawdown(r)),
            "final_equity": float(equity[-1])}


def slice_series(series: Sequence[Bars], start: int, stop: int) -> list[Bars]:
    return [b.take(slice(start, stop)) for b in series]


def evaluate(problem: Problem, params: dict[str, Any], start: int, stop: int) -> TrialResult:
    """Backtest ``params`` on bars ``[start, stop)`` and score them."""
    try:
        strategy = build_strategy(problem.strategy, {**problem.base_params, **params})
    except StrategyParamsError as exc:
        return TrialResult(params, "invalid", reason="; ".join(e["msg"] for e in exc.errors))
    result = run_backtest(strategy, slice_series(problem.series, start, stop), problem.config,
                          timeframe=problem.timeframe)
    metrics = trial_metrics(result.equity, result.annualization)
    trades = len(result.closed_trades)
    value = metrics[problem.objective]
    if trades < problem.min_trades:
        return TrialResult(params, "infeasible", None, trades, f"{trades} trades, fewer than {problem.min_trades}",
                           metrics)
    if value is None:
        return TrialResult(params, "infeasible", None, trades, f"{problem.objective} is undefined", metrics)
    return TrialResult(params, "complete", value, trades, None, metrics)
