"""Signals without a server: the lifecycle rules, the performance figures and the random
baseline on constructed series, causal model probabilities (no look-ahead), and the
AI-signals strategy in a backtest and on a live feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from tests.market_support import DATA
from tradepilot.ai.features import Candles
from tradepilot.market.importer import read_bars
from tradepilot.market.types import Bar
from tradepilot.signals.causal import causal_probabilities
from tradepilot.signals.lifecycle import SignalView, evaluate
from tradepilot.signals.performance import Scored, Series, performance, summary
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.builtins.ai_signals import AiSignals, LiveSignal

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def _bars(rows: list[tuple[int, int, int, int]]) -> list[Bar]:
    return [Bar("BTC/USDT", "1h", T0 + i * H, *(Decimal(v) for v in r), Decimal(1)) for i, r in enumerate(rows)]


SERIES = _bars([(100, 102, 99, 101), (101, 103, 100, 102), (102, 106, 101, 105), (105, 110, 104, 108),
                (108, 121, 107, 119), (119, 119, 112, 113)])


def _view(**kw: object) -> SignalView:
    base: dict[str, object] = {"side": "buy", "entry": None, "stop_loss": None, "take_profit": None, "horizon": 2,
                                   "created_at": T0, "expires_at": T0 + 10 * H}
    return SignalView(**{**base, **kw})  # type: ignore[arg-type]


def test_lifecycle_rules() -> None:
    # an entry is judged only on closed bars: at 02:59 bar 2 (whose range holds 105) is still open
    assert evaluate(_view(entry=Decimal(105)), SERIES, T0 + 3 * H - timedelta(minutes=1), H).status == "active"
    found = evaluate(_view(entry=Decimal(105), horizon=3), SERIES, T0 + 6 * H, H)
    assert (found.status, found.triggered_at, found.trigger_price) == ("triggered", T0 + 2 * H, Decimal(105))
    assert (found.outcome, found.exit_price) == ("horizon", Decimal(119))  # bars 2..4, close 119
    assert found.horizon_return == (Decimal(119) / 105 - 1).quantize(Decimal("1e-10"))
    # stop and target in one bar: the stop (the cautious reading)
    both = evaluate(_view(stop_loss=Decimal(107), take_profit=Decimal(120), horizon=5,
                          created_at=T0 + 4 * H), SERIES, T0 + 6 * H, H)
    assert (both.outcome, both.exit_price, both.horizon_return) == ("stop_loss", Decimal(107), None)
    # a signal created mid-bar waits for the next bar; one whose expiry passes first expires
    late = evaluate(_view(created_at=T0 + 30 * timedelta(minutes=1)), SERIES, T0 + 3 * H, H)
    assert late.triggered_at == T0 + H and late.trigger_price == Decimal(101)
    gone = evaluate(_view(entry=Decimal(50), expires_at=T0 + 3 * H), SERIES, T0 + 3 * H, H)
    assert gone.status == "expired"
    assert evaluate(_view(entry=Decimal(50), expires_at=T0 + 3 * H), SERIES, T0 + 2 * H, H).status == "active"
    # an expiry inside bar 2 (which holds 105): the bar is still judged once it closes
    mid = _view(entry=Decimal(105), expires_at=T0 + 2 * H + timedelta(minutes=30))
    assert evaluate(mid, SERIES, T0 + 2 * H + timedelta(minutes=45), H).status == "active"
    assert evaluate(mid, SERIES, T0 + 3 * H, H).status == "triggered"
    assert evaluate(_view(entry=Decimal(50), expires_at=mid.expires_at), SERIES, T0 + 3 * H, H).status == "expired"
    # re-evaluating a triggered signal from its stored trigger gives the same answer
    again = evaluate(_view(entry=Decimal(105), horizon=3, triggered_at=T0 + 2 * H, trigger_price=Decimal(105)),
                     SERIES, T0 + 6 * H, H)
    assert again == found


def _scored(source: str, side: str, ret: str, horizon: int = 2) -> Scored:
    return Scored(source, "BTC/USDT", "1h", horizon, side, 0, Decimal(ret), "horizon")


def test_performance_by_hand_and_the_random_baseline() -> None:
    # a steadily rising market: open_i = 100 + i, close_i = 100.5 + i
    n = 200
    rising = Series(np.arange(n, dtype=np.int64) * 3_600_000, 100.0 + np.arange(n), 100.5 + np.arange(n))
    signals = [_scored("model", "buy", "0.03"), _scored("model", "sell", "-0.01"), _scored("model", "buy", "0.01"),
               _scored("model", "buy", "0.05"), _scored("webhook", "sell", "0.02")]
    found = performance(signals, lambda s, t: rising, seed=11, samples=50)
    model = found["by_source"]["model"]
    assert model["count"] == 4 and model["hit_rate"] == 0.75
    assert model["mean_return"] == pytest.approx((0.03 - 0.01 + 0.01 + 0.05) / 4)
    assert model["median_return"] == pytest.approx((0.01 + 0.03) / 2)
    assert found["overall"]["count"] == 5 and found["overall"]["hit_rate"] == 0.8
    assert found["overall"]["median_return"] == pytest.approx(0.02)
    base = found["baseline"]
    assert base["overall"]["count"] == 250 and base["by_source"]["model"]["count"] == 200
    assert base["by_source"]["webhook"]["hit_rate"] == 0.0  # selling into a rising market always loses
    assert found["by_source"]["webhook"]["beats_baseline"] == {"hit_rate": True, "mean_return": True}
    # the model's baseline: 150 random buys (all win) and 50 random sells (all lose)
    assert base["by_source"]["model"]["hit_rate"] == 0.75
    # every random buy held two bars returns (101.5 + j) / (100 + j) − 1: between these bounds
    buy_returns = (101.5 + np.arange(n - 1)) / (100 + np.arange(n - 1)) - 1
    webhook = base["by_source"]["webhook"]
    assert -buy_returns.max() <= webhook["mean_return"] <= -buy_returns.min()
    assert performance(signals, lambda s, t: rising, seed=11, samples=50) == found  # seeded
    assert performance(signals, lambda s, t: rising, seed=12, samples=50)["baseline"] != base
    assert summary([]) == {"count": 0, "hit_rate": None, "mean_return": None, "median_return": None}


def _btc(n: int) -> Candles:
    bars = read_bars(DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first3000.csv", "BTC/USDT", "1h")[:n]
    return Candles(np.array([b.open_time.timestamp() for b in bars]),
                   *(np.array([float(getattr(b, f)) for b in bars]) for f in ("open", "high", "low", "close", "volume")))


def test_causal_probabilities_never_look_ahead() -> None:
    candles = _btc(1400)
    full = causal_probabilities(candles, 1, min_train=500, refit_every=300)
    assert np.isnan(full[:500]).all() and np.isfinite(full[500:]).all()
    for cut in (650, 1000):  # the history after bar ``cut`` changes nothing up to it
        head = causal_probabilities(candles.head(cut), 1, min_train=500, refit_every=300)
        np.testing.assert_array_equal(head, full[:cut])
    # and changing the future (reversed tail) changes nothing before it either
    tail = candles.close.copy()
    tail[1000:] = tail[1000:][::-1]
    changed = Candles(candles.time, candles.open, np.maximum(candles.high, tail), np.minimum(candles.low, tail), tail,
                      candles.volume)
    np.testing.assert_array_equal(causal_probabilities(changed, 1, min_train=500, refit_every=300)[:1000], full[:1000])
    assert 0.3 < float(np.nanmean(full)) < 0.7


def test_ai_signals_backtests_on_causal_model_signals() -> None:
    candles = _btc(1600)
    bars = Bars.from_arrays("BTC/USDT", (candles.time * 1000).astype(np.int64), candles.open, candles.high,
                            candles.low, candles.close, candles.volume)
    strategy = AiSignals({"min_strength": 0.02, "horizon": 6, "size": 0.5, "stop_loss": 0.03, "refit_every": 300})
    result = run_backtest(strategy, bars, BacktestConfig(initial_cash=10_000))
    assert result.path == "events" and len(result.fills.price) >= 4
    assert int(result.fills.index.min()) > 500  # no trade before the first model could be fitted
    probs = causal_probabilities(candles, 6, min_train=500, refit_every=300)
    first_buy = int(result.fills.index[0])  # filled at the open after the deciding bar
    assert abs(2 * probs[first_buy - 1] - 1) >= 0.02 and probs[first_buy - 1] > 0.5
    stricter = run_backtest(AiSignals({"min_strength": 0.3, "horizon": 6, "refit_every": 300}), bars,
                            BacktestConfig(initial_cash=10_000))
    assert len(stricter.fills.price) < len(result.fills.price)


class _Ctx:
    """A one-symbol context: what a live run gives a strategy on one bar."""

    symbols = ("BTC/USDT",)

    def __init__(self, bars: Bars, held: float) -> None:
        self._bars, self.held, self.orders = bars, held, []  # type: ignore[var-annotated]

    def bars(self, symbol: str) -> Bars:
        return self._bars

    def position(self, symbol: str) -> float:
        return self.held

    def has_pending_market_order(self, symbol: str) -> bool:
        return False

    def submit(self, order) -> int:  # type: ignore[no-untyped-def]
        self.orders.append(order)
        return len(self.orders)


def test_ai_signals_on_a_live_feed() -> None:
    bars = Bars.from_arrays("BTC/USDT", np.array([0, 60_000, 120_000]), np.array([100.0, 101, 104]),
                            np.array([101.0, 103, 112]), np.array([99.0, 100, 103]), np.array([100.5, 102, 111]))
    strategy = AiSignals({"min_strength": 0.5, "size": 0.25})
    strong = LiveSignal("s1", "BTC/USDT", "buy", 0.9, None, 95.0, 110.0, 10)
    weak = LiveSignal("w1", "BTC/USDT", "buy", 0.3, None, None, None, 10)
    limit = LiveSignal("l1", "BTC/USDT", "buy", 0.95, 90.0, None, None, 10)  # entry 90: not reached on bar 1
    strategy.use_signals([weak, limit, strong])
    flat = _Ctx(bars, 0.0)
    strategy.on_start(flat)
    strategy.on_bar(flat, 1)
    [buy] = flat.orders
    assert (buy.side, buy.fraction) == ("buy", 0.25) and strategy.state()["used"] == ["s1"]
    strategy.use_signals([weak, limit, strong])
    long = _Ctx(bars, 1.0)
    strategy.on_bar(long, 2)  # close 111 ≥ the signal's target 110: out
    [sell] = long.orders
    assert sell.side == "sell"
    again = _Ctx(bars, 0.0)
    strategy.on_bar(again, 2)  # s1 is used; the weak one is below the threshold; 90 not in 103..112
    assert again.orders == []
    only_webhooks = AiSignals({"min_strength": 0.5, "sources": ["webhook"]})
    only_webhooks.use_signals([strong])  # a model signal (LiveSignal's default source)
    ignored = _Ctx(bars, 0.0)
    only_webhooks.on_bar(ignored, 1)
    assert ignored.orders == []
    only_webhooks.use_signals([LiveSignal("h1", "BTC/USDT", "buy", 0.9, None, None, None, 10, "webhook")])
    only_webhooks.on_bar(ignored, 1)
    assert len(ignored.orders) == 1
    restored = AiSignals({"min_strength": 0.5})
    restored.restore(strategy.state())
    assert restored.state() == strategy.state()
