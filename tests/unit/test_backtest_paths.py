"""The vectorised fast path and the event-driven broker give the same fills for the same
signals, whatever the bars, signals, fees, slippage and protective exits (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.base import SignalStrategy, Signals, StrategyParams
from tradepilot.strategies.bars import Bars


class Given(SignalStrategy):
    name = "given"
    title = "given"
    Params = StrategyParams

    def __init__(self, signals: Signals) -> None:
        super().__init__({})
        self._signals = signals

    def signals(self, bars: Bars) -> Signals:
        return self._signals


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Bars, Signals, BacktestConfig]:
    n = draw(st.integers(3, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.01, n))  # gaps
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.02, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.02, n)))
    bars = Bars.from_arrays("X/USDT", np.arange(n) * 60_000, open_, high, low, close, np.full(n, 1e6))
    density = draw(st.floats(0.05, 0.6))
    optional = lambda lo, hi: st.one_of(st.none(), st.floats(lo, hi))  # noqa: E731
    signals = Signals(rng.random(n) < density, rng.random(n) < density, draw(st.floats(0.1, 1.0)),
                      draw(optional(0.005, 0.2)), draw(optional(0.005, 0.3)), draw(optional(0.005, 0.2)))
    config = BacktestConfig(initial_cash=1_000, maker_fee=draw(st.sampled_from([0.0, 0.0002, 0.001])),
                            taker_fee=draw(st.sampled_from([0.0, 0.001, 0.0025])),
                            slippage=draw(st.sampled_from([0.0, 0.0005])),
                            quantity_step=draw(st.sampled_from([0.0, 1e-4])))
    return bars, signals, config


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_fast_path_and_event_path_agree(scenario: tuple[Bars, Signals, BacktestConfig]) -> None:
    bars, signals, config = scenario
    fast = run_backtest(Given(signals), bars, config, path="fast")
    events = run_backtest(Given(signals), bars, config, path="events")
    assert fast.path == "fast" and events.path == "events"
    a, b = fast.fills.rows(), events.fills.rows()
    assert [(f.side, f.index, f.role, f.maker) for f in a] == [(f.side, f.index, f.role, f.maker) for f in b]
    np.testing.assert_allclose([f.price for f in a], [f.price for f in b], rtol=1e-12)
    np.testing.assert_allclose([f.quantity for f in a], [f.quantity for f in b], rtol=1e-12)
    np.testing.assert_allclose(fast.equity, events.equity, rtol=1e-9)
    assert [t.exit_reason for t in fast.trades] == [t.exit_reason for t in events.trades]
