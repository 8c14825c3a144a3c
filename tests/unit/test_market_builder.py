"""Live candles from real Binance trades: exactly the bars a plain aggregation gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tests.market_support import binance_trades
from tradepilot.market.builder import CandleBuilder
from tradepilot.market.types import Bar, Trade


def expected_bars(trades: list[Trade], minutes: int, timeframe: str) -> dict[datetime, Bar]:
    """Independent aggregation: group by the period's start written out from the timestamp."""
    groups: dict[datetime, list[Trade]] = {}
    for t in trades:
        start = t.ts.replace(second=0, microsecond=0)
        start -= timedelta(minutes=(start.hour * 60 + start.minute) % minutes)
        groups.setdefault(start, []).append(t)
    return {start: Bar(t[0].symbol, timeframe, start, t[0].price, max(x.price for x in t), min(x.price for x in t),
                       t[-1].price, sum((x.quantity for x in t), Decimal(0)), True)
            for start, t in groups.items()}


def test_trades_aggregate_into_exactly_the_expected_candles() -> None:
    trades = binance_trades()  # 23:54:15 .. 23:57:59.79
    builder = CandleBuilder()
    closed: list[Bar] = []
    for trade in trades:
        closed += builder.on_trade(trade)
    closed += builder.advance("BTC/USDT", datetime(2024, 8, 8, 23, 58, 0, 1000, tzinfo=timezone.utc))
    minute_bars = [b for b in closed if b.timeframe == "1m"]
    expected = expected_bars(trades, 1, "1m")
    assert len(minute_bars) == 4 and {b.open_time: b for b in minute_bars} == expected
    assert sum(b.volume for b in minute_bars) == sum(t.quantity for t in trades)
    # the 5m bar 23:55-00:00 is still open: the builder's current one is the aggregation so far
    five = {b.timeframe: b for b in builder.current("BTC/USDT")}["5m"]
    expected5 = expected_bars([t for t in trades if t.ts.minute >= 55], 5, "5m")
    e = expected5[five.open_time]
    assert (five.open, five.high, five.low, five.close, five.volume, five.closed) == (
        e.open, e.high, e.low, e.close, e.volume, False)
    # and the 23:50-23:55 5m bar closed with the 23:54 minute, from the trades it saw
    closed5 = [b for b in closed if b.timeframe == "5m"]
    e = expected_bars([t for t in trades if t.ts.minute == 54], 5, "5m")
    assert closed5 == list(e.values())


def test_quiet_minutes_become_flat_bars_and_day_stats_roll() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    trade = lambda s, p, q: Trade("sim", "X/Y", str(s), Decimal(p), Decimal(q), "buy", t0 + timedelta(seconds=s))  # noqa: E731
    builder = CandleBuilder()
    builder.on_trade(trade(5, "10", "1"))
    builder.on_trade(trade(30, "12", "2"))
    closed = builder.on_trade(trade(200, "11", "1"))  # 00:03:20: minutes 1 and 2 had no trade
    assert [(b.timeframe, b.open_time.minute, b.close, b.volume) for b in closed] == [
        ("1m", 0, Decimal(12), Decimal(3)), ("1m", 1, Decimal(12), Decimal(0)), ("1m", 2, Decimal(12), Decimal(0))]
    stats = builder.day_stats("X/Y")
    assert (stats.open, stats.high, stats.low, stats.volume) == (Decimal(10), Decimal(12), Decimal(10), Decimal(4))
    late = builder.on_trade(trade(100, "99", "5"))  # a trade for a closed minute changes nothing
    assert late == [] and builder.day_stats("X/Y").high == Decimal(12)


def test_seeded_history_continues_the_open_periods() -> None:
    t0 = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
    history = [Bar("X/Y", "1m", t0 + timedelta(minutes=i), Decimal(100 + i), Decimal(101 + i), Decimal(99 + i),
                   Decimal(100 + i), Decimal(1)) for i in range(37)]  # 10:00 .. 10:36
    builder = CandleBuilder()
    builder.seed("X/Y", history)
    builder.on_trade(Trade("sim", "X/Y", "1", Decimal(90), Decimal(2), "sell", t0 + timedelta(minutes=37, seconds=1)))
    hour = {b.timeframe: b for b in builder.current("X/Y")}["1h"]
    assert (hour.open, hour.high, hour.low, hour.close, hour.volume) == (
        Decimal(100), Decimal(137), Decimal(90), Decimal(90), Decimal(39))
