"""Strategy generation: the regime picks the family, the parameters are fitted on the fit window
only, and the figures returned come from the later test window.

The series are built here — a calm random walk, then a drift, an Ornstein-Uhlenbeck process
or GARCH(1,1) bursts (tests/unit/test_ai_regime.py's constructions) — so each regime is known.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_ai_regime import BUILDERS, SIGMA
from tradepilot.ai.regime import load_regime_model
from tradepilot.ai.strategy_generation import (
    MIN_FIT_BARS,
    MIN_TEST_BARS,
    NotEnoughBars,
    generate_strategy,
    split,
)
from tradepilot.strategies.bars import Bars

HOUR_MS = 3_600_000


def bars_from_moves(moves: np.ndarray, seed: int = 0) -> Bars:
    rng = np.random.default_rng(seed + 1000)
    close = 100 * np.exp(np.cumsum(moves))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, SIGMA / 2, close.size))
    time = 1_600_000_000_000 + HOUR_MS * np.arange(close.size)
    return Bars.from_arrays("X/USDT", time, open_, np.maximum(open_, close) * (1 + wick),
                            np.minimum(open_, close) * (1 - wick), close, np.ones(close.size))


def regime_series(kind: str, seed: int) -> np.ndarray:
    """1,150 calm bars, then 850 of the regime: the fit window (1,400 bars) ends 250 bars into it."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, SIGMA, 1150), BUILDERS[kind](rng, 850)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_regime_gets_its_own_strategy_family(seed: int) -> None:
    model = load_regime_model()
    answers = {kind: generate_strategy(bars_from_moves(regime_series(kind, seed)), model) for kind in BUILDERS}
    assert {k: a.regime for k, a in answers.items()} == {"trending": "trending", "ranging": "ranging",
                                                          "volatile": "volatile"}
    assert {k: a.family for k, a in answers.items()} == {"trending": "trend_following", "ranging": "mean_reversion",
                                                          "volatile": "volatility_breakout"}
    assert answers["trending"].strategy in ("ema_cross", "macd")
    assert answers["ranging"].strategy == "rsi_reversion"
    volatile = answers["volatile"]
    assert volatile.strategy == "bollinger_breakout" and volatile.params["stop_loss"] in (0.03, 0.06)


def test_the_backtest_returned_is_out_of_sample() -> None:
    moves = regime_series("ranging", 5)
    answer = generate_strategy(bars_from_moves(moves), load_regime_model())
    first_test = split(moves.size)
    assert answer.fit_window["bars"] == first_test and answer.test_window["bars"] == moves.size - first_test
    assert answer.fit_window["end"] < answer.test_window["start"]  # ISO strings of one format sort as times
    out = answer.out_of_sample
    assert (out["start"], out["end"], out["bars"]) == (answer.test_window["start"], answer.test_window["end"],
                                                       answer.test_window["bars"])
    assert "total_return" in out["buy_and_hold"] and out["strategy"] == answer.strategy

    # another future: the choice (made on the fit window) stays, the out-of-sample figures change
    other_future = moves.copy()
    other_future[first_test:] = np.random.default_rng(99).normal(0, 2 * SIGMA, moves.size - first_test)
    again = generate_strategy(bars_from_moves(other_future), load_regime_model())
    assert (again.regime, again.strategy, again.params, again.in_sample) == (
        answer.regime, answer.strategy, answer.params, answer.in_sample)
    assert again.out_of_sample["final_equity"] != out["final_equity"]
    assert again.out_of_sample["buy_and_hold"] != out["buy_and_hold"]


def test_changing_the_series_changes_the_answer() -> None:
    model = load_regime_model()
    one = generate_strategy(bars_from_moves(regime_series("trending", 11)), model)
    two = generate_strategy(bars_from_moves(regime_series("trending", 12)), model)
    assert one.regime_probabilities != two.regime_probabilities
    assert one.in_sample != two.in_sample and one.out_of_sample["buy_and_hold"] != two.out_of_sample["buy_and_hold"]


def test_too_few_bars_are_refused() -> None:
    with pytest.raises(NotEnoughBars):
        generate_strategy(bars_from_moves(np.zeros(MIN_FIT_BARS + MIN_TEST_BARS - 1) + 0.001), load_regime_model())
