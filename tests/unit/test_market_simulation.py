"""The simulated market: realistic 1m statistics (against Coinbase), determinism, a sane live book."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest

from tests.market_support import COINBASE_BTC_1M, COINBASE_ETH_1M, candle_rows
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.market.feeds.sim_history import plan_history
from tradepilot.market.feeds.sim_model import ReturnModel, bars_from_returns, history_rng, spec_for
from tradepilot.market.feeds.simulated import SimulatedFeed
from tradepilot.market.frame import to_ms
from tradepilot.market.resample import resample
from tradepilot.market.store import CandleStore
from tradepilot.market.types import OrderBook, Trade

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
DEFAULT_SEED = Settings.model_fields["market_seed"].default


def excess_kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    return float((d**4).mean() / (d**2).mean() ** 2 - 3)


def autocorrelation(x: np.ndarray, lag: int) -> float:
    d = x - x.mean()
    return float((d[:-lag] * d[lag:]).sum() / (d * d).sum())


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / math.sqrt((dx * dx).sum() * (dy * dy).sum()))


def figures(returns: np.ndarray) -> dict[str, float]:
    absolute = np.abs(returns)
    acf = [autocorrelation(absolute, lag) for lag in range(1, 21)]
    return {"kurtosis": excess_kurtosis(returns), "acf1": acf[0], "acf_mean": sum(acf) / 20,
            "acf_head": sum(acf[:5]) / 5, "acf_tail": sum(acf[10:]) / 10, "acf_min": min(acf)}


def coinbase_returns(path) -> dict[datetime, float]:  # type: ignore[no-untyped-def]
    rows = candle_rows(path)
    return {b.time: math.log(b.value("close") / a.value("close"))
            for a, b in zip(rows, rows[1:], strict=False) if b.time - a.time == timedelta(minutes=1)}


@pytest.fixture(scope="module")
def simulated() -> dict[str, np.ndarray]:
    """180 days of the back-fill's own 1m bars for the four default symbols (default seed)."""
    specs = [spec_for(s) for s in SYMBOLS]
    model = ReturnModel(specs)
    rng = history_rng(DEFAULT_SEED, 0, 0)
    returns, sigma, _ = model.simulate(180 * 1440, rng, model.initial_state(rng))
    out = {}
    for i, spec in enumerate(specs):
        closes = bars_from_returns(spec, 0, returns[i], sigma[i], rng).as_float("close")
        out[spec.symbol] = np.diff(np.log(closes))
    return out


def test_simulated_returns_have_the_statistics_of_real_1m_data(simulated) -> None:  # type: ignore[no-untyped-def]
    real = {"BTC/USDT": coinbase_returns(COINBASE_BTC_1M), "ETH/USDT": coinbase_returns(COINBASE_ETH_1M)}
    for symbol in SYMBOLS:
        sim = figures(simulated[symbol])
        assert sim["kurtosis"] >= 3, (symbol, sim)
        assert sim["acf_min"] > 0, (symbol, sim)  # |r| autocorrelated over lags 1..20 ...
        assert sim["acf1"] > sim["acf_head"] > sim["acf_tail"], (symbol, sim)  # ... and decaying
        if symbol in real:
            ref = figures(np.array(list(real[symbol].values())))
            for name in ("kurtosis", "acf1", "acf_mean"):
                assert ref[name] / 2 <= sim[name] <= ref[name] * 2, (symbol, name, sim[name], ref[name])
    sim_corr = correlation(simulated["BTC/USDT"], simulated["ETH/USDT"])
    common = sorted(set(real["BTC/USDT"]) & set(real["ETH/USDT"]))
    real_corr = correlation(np.array([real["BTC/USDT"][t] for t in common]),
                            np.array([real["ETH/USDT"][t] for t in common]))
    assert 0.6 <= sim_corr <= 0.9 and real_corr / 2 <= sim_corr <= real_corr * 2, (sim_corr, real_corr)


def test_history_is_deterministic_and_continues_from_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    specs = [spec_for(s) for s in SYMBOLS[:2]]
    now = to_ms(datetime(2026, 3, 1, 12, 30, 20, tzinfo=timezone.utc))
    plans = [plan_history(specs, CandleStore(tmp_path / name, "simulated"), seed=seed, now_ms=now, days=2)
             for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    for plan in plans:
        plan.write(threading.Event())
    a, b, c = (CandleStore(tmp_path / n, "simulated") for n in "abc")
    bars_a = a.read_bars("BTC/USDT", "1m")
    assert len(bars_a) == 2 * 1440 and bars_a == b.read_bars("BTC/USDT", "1m")
    assert bars_a != c.read_bars("BTC/USDT", "1m")
    assert bars_a[-1].open_time == datetime(2026, 3, 1, 12, 29, tzinfo=timezone.utc)
    assert bars_a[-1].close == spec_for("BTC/USDT").price  # the history ends where the live market starts
    assert plans[0].live_price["BTC/USDT"] == bars_a[-1].close
    # higher timeframes are the resampled 1m history
    frame = a.read("BTC/USDT", "1m")
    assert a.read_bars("BTC/USDT", "4h") == resample(frame, "4h").to_bars("BTC/USDT", "4h")
    assert all(bars_a[i].close == bars_a[i + 1].open for i in range(len(bars_a) - 1))
    # a later start continues from the last stored close, up to the new now
    later = now + 90 * 60_000
    plan = plan_history(specs, a, seed=1, now_ms=later, days=2)
    plan.write(threading.Event())
    after = a.read_bars("BTC/USDT", "1m", bars_a[-1].open_time)
    assert len(after) == 91 and after[1].open == bars_a[-1].close
    assert a.gaps("BTC/USDT", "1m") == []
    assert plan.live_price["BTC/USDT"] == after[-1].close


async def test_live_market_books_and_trades_are_consistent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = TestClock(datetime(2026, 3, 1, 12, 0, 10, tzinfo=timezone.utc))
    feed = SimulatedFeed(SYMBOLS[:2], seed=5, clock=clock, tick_interval=0.5, backfill_days=0.1)
    store = CandleStore(tmp_path, "simulated")
    recent = await feed.prepare(store)
    await feed.history  # type: ignore[misc]
    last_close = recent["BTC/USDT"][-1].close
    events = []
    for _ in range(2 * 180):  # three minutes of ticks
        clock.advance(0.5)
        events += feed.step(clock.now())
    await feed.stop()
    books = [e for e in events if isinstance(e, OrderBook) and e.symbol == "BTC/USDT"]
    trades = [e for e in events if isinstance(e, Trade) and e.symbol == "BTC/USDT"]
    assert len(books) >= 360 and len(trades) > 300
    tick, step = Decimal("0.01"), Decimal("0.00001")
    for prev, book in zip(books, books[1:], strict=False):
        assert book.seq > prev.seq
        assert len(book.bids) == len(book.asks) == 50
        assert book.bids[0][0] < book.asks[0][0]  # never crossed
        assert all(a[0] > b[0] for a, b in zip(book.bids, book.bids[1:], strict=False))
        assert all(a[0] < b[0] for a, b in zip(book.asks, book.asks[1:], strict=False))
        assert all(p % tick == 0 and q % step == 0 and q > 0 for p, q in book.bids + book.asks)
    assert len({b.bids[0][1] for b in books}) > 50  # queues change
    assert all(t.price % tick == 0 and t.quantity % step == 0 for t in trades)
    assert {t.side for t in trades} == {"buy", "sell"}
    # live prices continue from the history (a minute's move, not a jump) and do move
    assert abs(trades[0].price / last_close - 1) < Decimal("0.01")
    assert len({t.price for t in trades}) > 100
    # trades carry strictly increasing ids and the feed's timestamps
    assert all(int(b.id) > int(a.id) for a, b in zip(trades, trades[1:], strict=False))
    assert trades[-1].ts <= clock.now()


async def test_a_stopped_feed_starts_again_when_prepared_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The owner stops the feed when it loses the lease and prepares it again when it regains it."""
    clock = TestClock(datetime(2026, 3, 1, 12, 0, 10, tzinfo=timezone.utc))
    feed = SimulatedFeed(SYMBOLS[:1], seed=5, clock=clock, tick_interval=0.5, backfill_days=0.05)
    store = CandleStore(tmp_path, "simulated")
    await feed.prepare(store)
    await feed.history  # type: ignore[misc]
    await feed.stop()
    assert [e async for e in feed.events()] == []  # stopped: the live loop ends at once
    clock.advance(120)
    await feed.prepare(store)
    await feed.history  # type: ignore[misc]
    stream = feed.events()
    clock.advance(0.5)
    first = await anext(stream)
    assert first.symbol == "BTC/USDT"
    await feed.stop()
    await stream.aclose()
