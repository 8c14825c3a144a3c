"""A parameter sweep: one strategy, every combination of a grid, on the same bars.

Each combination is an ordinary fast-path backtest (signals, fills, equity curve); what is
shared is the bars and nothing else, so a sweep's figures are exactly those of single runs.
``workers > 1`` spreads the combinations over processes (the bars are sent once per worker).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.runner import run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import Strategy, StrategyParamsError


@dataclass(frozen=True, slots=True)
class SweepPoint:
    params: dict[str, Any]
    final_equity: float
    trades: int


def combinations(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    names = list(grid)
    return [{**(fixed or {}), **dict(zip(names, values, strict=True))} for values in itertools.product(*grid.values())]


def _run(strategy_cls: type[Strategy], bars: Bars, config: BacktestConfig, params: dict[str, Any]) -> SweepPoint | None:
    try:
        strategy = strategy_cls(params)
    except StrategyParamsError:
        return None  # e.g. fast >= slow: not a valid combination
    result = run_backtest(strategy, bars, config)
    return SweepPoint(params, result.final_equity, int((result.fills.side < 0).sum()))


def _run_many(args: tuple[type[Strategy], Bars, BacktestConfig, list[dict[str, Any]]]) -> list[SweepPoint | None]:
    strategy_cls, bars, config, chunk = args
    return [_run(strategy_cls, bars, config, p) for p in chunk]


def sweep(strategy_cls: type[Strategy], bars: Bars, grid: Mapping[str, Sequence[Any]], config: BacktestConfig | None = None,
          *, fixed: Mapping[str, Any] | None = None, workers: int = 1) -> list[SweepPoint]:
    """Every valid combination's final equity and trade count, in grid order."""
    config = config or BacktestConfig()
    points = combinations(grid, fixed)
    if workers <= 1:
        results = [_run(strategy_cls, bars, config, p) for p in points]
    else:
        chunks = [points[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_run_many, [(strategy_cls, bars, config, c) for c in chunks]))
        results = [None] * len(points)
        for w, part in enumerate(parts):
            for k, r in enumerate(part):
                results[w + k * workers] = r
    return [r for r in results if r is not None]
