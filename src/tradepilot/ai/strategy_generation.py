"""A strategy for the market's regime, chosen on past bars and proven on later ones.

``generate_strategy`` answers "what should I run on this market?" without pretending: the
bars are cut in two, a **fit window** and the **test window** after it. The regime classifier
reads the fit window's end (nothing after it), the regime picks a family of registered
strategies — trend following for a trending market, mean reversion for a ranging one, a
breakout with protective stops for a volatile one — and a small grid of each family's
parameters is backtested on the fit window only; the best by Sharpe ratio (with a minimum
number of trades) is then backtested once on the test window, beside buy-and-hold on the same
bars. Those test-window figures are the only ones the answer calls out of sample.

Pure and synchronous (numpy and the backtester): the HTTP route runs it in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradepilot.ai.regime import RegimeModel
from tradepilot.ai.regime_features import HISTORY, WINDOW
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.backtest.result import utc
from tradepilot.strategies.backtest.sweep import combinations
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import build_strategy
from tradepilot.strategies.optimize.evaluate import trial_metrics

MIN_FIT_BARS = HISTORY + WINDOW + 80  # the classifier's history and window, and room for the indicators
MIN_TEST_BARS = 200  # indicators warm up inside the test window; fewer bars leave too few trades to judge
TEST_FRACTION = 0.3
MIN_TRADES = 3  # a parameter set with fewer trades in the fit window is not judged by its Sharpe


@dataclass(frozen=True, slots=True)
class Candidate:
    strategy: str  # a registered strategy's name (strategies.catalog)
    grid: Mapping[str, Sequence[Any]]
    fixed: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    why: str
    candidates: tuple[Candidate, ...]


FAMILIES: dict[str, Family] = {
    "trending": Family(
        "trend_following", "a persistent drift: moving-average and MACD crossovers ride it and step aside when it turns",
        (Candidate("ema_cross", {"fast": (5, 10, 20), "slow": (30, 60, 120)}, {}),
         Candidate("macd", {"fast": (8, 12), "slow": (26, 40), "signal": (9,)}, {}))),
    "ranging": Family(
        "mean_reversion", "prices pulled back to a mean: buy oversold, sell overbought",
        (Candidate("rsi_reversion", {"period": (7, 14, 21), "oversold": (25.0, 30.0, 35.0),
                                     "overbought": (65.0, 70.0)}, {}),)),
    "volatile": Family(
        "volatility_breakout", "large, clustered moves: trade breakouts of the bands, always behind a stop",
        (Candidate("bollinger_breakout", {"period": (20, 40), "deviations": (1.5, 2.0, 2.5),
                                          "stop_loss": (0.03, 0.06)}, {"trailing_stop": 0.08}),)),
}


class NotEnoughBars(ValueError):
    """Fewer bars than a fit window and a test window need."""


@dataclass(frozen=True)
class GeneratedStrategy:
    regime: str
    regime_probabilities: dict[str, float]
    family: str
    why: str
    strategy: str
    params: dict[str, Any]
    fit_window: dict[str, Any]
    test_window: dict[str, Any]
    in_sample: dict[str, Any]  # the chosen parameters' figures on the fit window
    out_of_sample: dict[str, Any]  # the backtest summary on the test window (buy-and-hold inside)
    candidates_tried: int

    def as_dict(self) -> dict[str, Any]:
        return {"regime": self.regime, "regime_probabilities": self.regime_probabilities, "family": self.family,
                "why": self.why, "strategy": self.strategy, "params": self.params, "fit_window": self.fit_window,
                "test_window": self.test_window, "in_sample": self.in_sample, "out_of_sample": self.out_of_sample,
                "candidates_tried": self.candidates_tried}


def split(n: int) -> int:
    """Index of the first test bar: the last ``TEST_FRACTION`` (at least ``MIN_TEST_BARS``)."""
    test = max(MIN_TEST_BARS, int(n * TEST_FRACTION))
    if n - test < MIN_FIT_BARS:
        raise NotEnoughBars(f"{n} bars; at least {MIN_FIT_BARS + MIN_TEST_BARS} are needed "
                            f"({MIN_FIT_BARS} to fit, {MIN_TEST_BARS} to test)")
    return n - test


def _span(bars: Bars) -> dict[str, Any]:
    return {"start": utc(int(bars.time[0])), "end": utc(int(bars.time[-1])), "bars": len(bars)}


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _fit(family: Family, bars: Bars, config: BacktestConfig) -> tuple[str, dict[str, Any], dict[str, Any], int]:
    """The family's best parameter set on ``bars`` by Sharpe (sets with too few trades rank
    after every set with enough, by total return)."""
    best: tuple[tuple[int, float], str, dict[str, Any], dict[str, Any]] | None = None
    tried = 0
    for candidate in family.candidates:
        for params in combinations(candidate.grid, candidate.fixed):
            try:
                strategy = build_strategy(candidate.strategy, params)
            except StrategyParamsError:
                continue
            tried += 1
            result = run_backtest(strategy, bars, config)
            figures = trial_metrics(result.equity, result.annualization)
            trades = int((result.fills.side < 0).sum())
            enough = trades >= MIN_TRADES
            score = figures["sharpe"] if enough else figures["total_return"]
            rank = (int(enough), score if score is not None else -math.inf)
            if best is None or rank > best[0]:
                chosen = strategy.params.model_dump(mode="json")
                best = (rank, candidate.strategy, chosen, {**{k: _clean(v) for k, v in figures.items()},
                                                           "trades": trades})
    assert best is not None  # every family has valid defaults
    return best[1], best[2], best[3], tried


def generate_strategy(bars: Bars, regime_model: RegimeModel, config: BacktestConfig | None = None,
                      timeframe: str | None = None) -> GeneratedStrategy:
    """The regime at the fit window's end → a family → parameters fitted on the fit window →
    one backtest on the test window beside buy-and-hold."""
    config = config or BacktestConfig()
    first_test = split(len(bars))
    fit, test = bars.take(slice(0, first_test)), bars.take(slice(first_test, len(bars)))
    reading = regime_model.classify(np.log(fit.close))
    if reading is None:
        raise NotEnoughBars("the fit window's prices do not move: no regime to read")
    family = FAMILIES[reading.regime]
    name, params, in_sample, tried = _fit(family, fit, config)
    out = run_backtest(build_strategy(name, params), test, config, timeframe=timeframe).summary()
    return GeneratedStrategy(
        regime=reading.regime, regime_probabilities={k: round(v, 4) for k, v in reading.probabilities.items()},
        family=family.name, why=family.why, strategy=name, params=params, fit_window=_span(fit),
        test_window=_span(test), in_sample=in_sample, out_of_sample=out, candidates_tried=tried)
