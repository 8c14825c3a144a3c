"""The replay venue (market/feeds/replay.py, sources.py) on the recorded slices in tests/data."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tradepilot.core.clock import TestClock
from tradepilot.market.builder import CandleBuilder
from tradepilot.market.feeds import build_feed
from tradepilot.market.feeds.replay import ReplayConfig, ReplayFeed
from tradepilot.market.feeds.sources import ReplaySource, bar_to_trades, discover, read_bars
from tradepilot.market.types import TIMEFRAMES, Bar, MarketEvent, OrderBook, Trade

DATA = Path(__file__).resolve().parents[1] / "data" / "market"
CANDLES_1M = DATA / "coinbase_multi_1m" / "BTCUSD-1m-first240.csv"
CANDLES_1H = DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first720.csv"
TRADES = DATA / "binance_spot_capture" / "BTCUSDT-trades-2024-08-08T2354-first600.csv"
CAPTURE = DATA / "binance_spot_capture" / "btcusdt_20240808_first90s.gz"


async def play(feed: ReplayFeed, limit: int | None = None) -> list[MarketEvent]:
    out: list[MarketEvent] = []
    async for event in feed.events():
        out.append(event)
        if limit is not None and len(out) >= limit:
            break
    return out


def csv_bars(path: Path, symbol: str, timeframe: str) -> list[Bar]:
    with path.open() as handle:
        return [Bar(symbol, timeframe, datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")),
                    Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]),
                    Decimal(r["volume"])) for r in csv.DictReader(handle)]


def bars_from_trades(trades: list[Trade], timeframe: str) -> list[Bar]:
    """The plainest candle builder: first/max/min/last/sum per period."""
    span = TIMEFRAMES[timeframe]
    bars: dict[datetime, list[Trade]] = {}
    for t in trades:
        start = datetime.fromtimestamp(int(t.ts.timestamp()) // span * span, tz=timezone.utc)
        bars.setdefault(start, []).append(t)
    return [Bar(ts[0].symbol, timeframe, start, ts[0].price, max(t.price for t in ts), min(t.price for t in ts),
                ts[-1].price, sum((t.quantity for t in ts), Decimal(0))) for start, ts in bars.items()]


async def test_candle_replay_yields_the_recorded_bars() -> None:
    feed = ReplayFeed.from_paths([CANDLES_1M], speed=0)
    (source,) = feed.sources
    assert (source.kind, source.symbol, source.timeframe) == ("candles", "BTC/USD", "1m")
    events = await play(feed)
    assert all(isinstance(e, Trade) and e.venue == "replay" for e in events)
    expected = csv_bars(CANDLES_1M, "BTC/USD", "1m")
    assert len(expected) == 240
    assert bars_from_trades(events, "1m") == expected  # type: ignore[arg-type]
    assert list(read_bars(CANDLES_1M, "BTC/USD", "1m")) == expected
    times = [e.ts for e in events]
    assert times == sorted(times)


async def test_the_market_candle_builder_rebuilds_replayed_hourly_bars() -> None:
    builder = CandleBuilder()
    built: list[Bar] = []
    events = await play(ReplayFeed.from_paths([CANDLES_1H], speed=0), limit=4 * 240)  # ten days
    for trade in events:
        built += builder.on_trade(trade)  # type: ignore[arg-type]
    built += builder.advance("BTC/USD", events[-1].ts + timedelta(hours=1))
    hourly = [replace(b, closed=True) for b in built if b.timeframe == "1h"]
    assert hourly == csv_bars(CANDLES_1H, "BTC/USD", "1h")[:240]


def test_a_bar_without_volume_is_played_as_trades_without_quantity() -> None:
    quiet = Bar("BTC/USD", "1h", datetime(2019, 3, 20, tzinfo=timezone.utc), Decimal("4000.5"), Decimal("4000.5"),
                Decimal("4000.5"), Decimal("4000.5"), Decimal(0))
    builder = CandleBuilder()
    built: list[Bar] = []
    for _, trade in bar_to_trades("replay", quiet):
        assert trade.quantity == 0 and trade.price == Decimal("4000.5")
        built += builder.on_trade(trade)
    built += builder.advance("BTC/USD", quiet.open_time + timedelta(hours=1))
    assert [b for b in built if b.timeframe == "1h"] == [quiet]


async def test_parquet_candles_replay_like_csv(tmp_path: Path) -> None:
    with CANDLES_1H.open() as handle:
        rows = list(csv.DictReader(handle))[:48]
    table = pa.table({
        "timestamp": pa.array([datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows],
                              pa.timestamp("ms", tz="UTC")),
        **{c: pa.array([Decimal(r[c]) for r in rows], pa.decimal128(18, 8)) for c in ("open", "high", "low", "close", "volume")},
    })
    path = tmp_path / "BTC_USD-1h.parquet"
    pq.write_table(table, path)
    events = await play(ReplayFeed.from_paths([path], speed=0))
    assert bars_from_trades(events, "1h") == csv_bars(CANDLES_1H, "BTC/USD", "1h")[:48]  # type: ignore[arg-type]


async def test_trade_csv_replays_the_same_trades_as_the_capture() -> None:
    from_csv = [e for e in await play(ReplayFeed.from_paths([TRADES], speed=0)) if isinstance(e, Trade)]
    from_capture = {e.id: e for e in await play(ReplayFeed.from_paths([CAPTURE], speed=0)) if isinstance(e, Trade)}
    assert len(from_csv) == 600
    assert from_csv[0].symbol == "BTC/USDT" and from_csv[0].id == "3735683259"
    for trade in from_csv:  # the CSV was made from the capture: same trade, same fields
        assert from_capture[trade.id] == trade


async def test_capture_replay_gives_uncrossed_books_with_increasing_seq() -> None:
    events = await play(ReplayFeed.from_paths([CAPTURE], speed=0, depth=10))
    books = [e for e in events if isinstance(e, OrderBook)]
    assert len(books) == 895 and len([e for e in events if isinstance(e, Trade)]) == 1708
    assert books[0].seq == 50093239224  # the snapshot (218) plus the diff that straddles it
    assert all(a.seq < b.seq for a, b in zip(books, books[1:]))
    assert all(len(b.bids) == 10 and len(b.asks) == 10 and b.bids[0][0] < b.asks[0][0] for b in books)


async def test_instruments_are_inferred_from_the_data() -> None:
    feed = ReplayFeed.from_paths([CAPTURE, CANDLES_1M], speed=0)
    instruments = {i.symbol: i for i in await feed.instruments()}
    btc = instruments["BTC/USDT"]
    assert (btc.venue, btc.base, btc.quote, btc.tick_size, btc.step_size) == ("replay", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
    assert instruments["BTC/USD"].tick_size == Decimal("0.01")


async def test_pacing_follows_the_recording_at_the_chosen_speed() -> None:
    clock = TestClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    feed = ReplayFeed.from_paths([CANDLES_1M], speed=60.0, clock=clock, sleep=sleep)
    events = await play(feed, limit=9)  # 2 bars and one trade: 2 minutes of recording
    assert events[-1].ts - events[0].ts == timedelta(minutes=2)
    assert sum(slept) == pytest.approx(120 / 60.0)  # two recorded minutes at 60× = 2 s
    assert all(s == pytest.approx(15 / 60.0) for s in slept)  # a trade every 15 recorded seconds


async def test_speed_zero_never_sleeps() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("speed 0 must not sleep")

    assert len(await play(ReplayFeed.from_paths([CANDLES_1M], speed=0, sleep=sleep))) == 960


async def test_stop_ends_a_paced_replay() -> None:
    feed = ReplayFeed.from_paths([CANDLES_1H], speed=1.0)  # an hour between bars, in real time
    seen: list[MarketEvent] = []

    async def consume() -> None:
        async for event in feed.events():
            seen.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await feed.stop()
    await asyncio.wait_for(task, timeout=2)
    assert len(seen) == 1


async def test_loop_keeps_time_seq_and_ids_moving_forward() -> None:
    feed = ReplayFeed.from_paths([CAPTURE], speed=0, loop=True, depth=5)
    events = await play(feed, limit=2606 + 200)
    assert feed.passes == 1
    books = [e for e in events if isinstance(e, OrderBook)]
    trades = [e for e in events if isinstance(e, Trade)]
    assert all(a.seq < b.seq for a, b in zip(books, books[1:]))
    assert len({t.id for t in trades}) == len(trades)
    assert trades[-1].id.endswith("~1")
    first_pass = [e.ts for e in events[:2606]]
    assert min(e.ts for e in events[2606:]) > max(first_pass)  # the second pass starts after the first


async def test_a_stopped_replay_starts_over_moving_forward() -> None:
    feed = ReplayFeed.from_paths([CAPTURE], speed=0, depth=5)
    first = await play(feed, limit=300)
    await feed.stop()
    again = await play(feed, limit=300)
    assert [e.symbol for e in again] == [e.symbol for e in first]
    assert again[0].ts > first[-1].ts
    first_seq = [e.seq for e in first if isinstance(e, OrderBook)]
    assert min(e.seq for e in again if isinstance(e, OrderBook)) > max(first_seq)
    assert not {e.id for e in first if isinstance(e, Trade)} & {e.id for e in again if isinstance(e, Trade)}


async def test_rebase_time_moves_the_recording_to_now_and_never_back() -> None:
    clock = TestClock(datetime(2030, 5, 1, tzinfo=timezone.utc))
    feed = ReplayFeed.from_paths([CANDLES_1M], speed=0, rebase_time=True, loop=True, clock=clock)
    events = await play(feed, limit=960 + 4)
    assert events[0].ts == clock.now()
    assert events[4].ts == clock.now() + timedelta(minutes=1)
    # the clock did not move while 4 recorded hours played: pass 2 follows pass 1's last event
    assert events[960].ts == events[959].ts + timedelta(milliseconds=1)
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))


def test_discover_groups_capture_files_and_infers_kinds(tmp_path: Path) -> None:
    (tmp_path / "btcusdt_1.gz").write_bytes(CAPTURE.read_bytes())
    (tmp_path / "btcusdt_2.gz").write_bytes(CAPTURE.read_bytes())
    sources = discover(tmp_path / "btcusdt_*.gz")
    assert sources == [ReplaySource((tmp_path / "btcusdt_1.gz", tmp_path / "btcusdt_2.gz"), "capture", "BTC/USDT")]
    (candles,) = discover(CANDLES_1H)
    assert (candles.kind, candles.symbol, candles.timeframe) == ("candles", "BTC/USD", "1h")
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "nothing-*.csv")


def test_build_feed_reads_replay_settings() -> None:
    class FakeSettings:  # only the attributes ReplayConfig reads
        market_replay_paths = (str(CANDLES_1M),)
        market_replay_speed = 5.0
        market_replay_venue = "history"

    config = ReplayConfig.from_settings(FakeSettings())  # type: ignore[arg-type]
    assert (config.paths, config.speed, config.venue, config.loop) == ((str(CANDLES_1M),), 5.0, "history", True)
    feed = build_feed("replay", FakeSettings())  # type: ignore[arg-type]
    assert isinstance(feed, ReplayFeed) and feed.venue == "history" and feed.speed == 5.0
    with pytest.raises(ValueError, match="REPLAY_PATHS"):
        ReplayFeed.from_config(ReplayConfig())
