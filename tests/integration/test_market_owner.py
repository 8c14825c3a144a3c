"""The feed's owner: one process per venue, events on the bus, caches on every replica."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.market_support import binance_trades
from tests.support import make_settings
from tests.unit.test_market_builder import expected_bars
from tradepilot.config import Settings
from tradepilot.core.events import Event
from tradepilot.core.lease import close_lease_managers
from tradepilot.market import payloads
from tradepilot.market.setup import feed_owner, start_feed_owner, start_market, stop_market
from tradepilot.market.store import CandleStore
from tradepilot.market.types import TIMEFRAMES, Bar, Instrument, MarketEvent, OrderBook, Trade
from tradepilot.runtime import Runtime, build_runtime


class RecordedFeed:
    """A feed that plays a fixed list of events, then stays quiet until stopped."""

    venue = "recorded"

    def __init__(self, events: list[MarketEvent]) -> None:
        self._events = events
        self._stopped = asyncio.Event()

    async def instruments(self) -> list[Instrument]:
        return [Instrument("recorded", "BTC/USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal(5))]

    async def events(self) -> AsyncIterator[MarketEvent]:
        for event in self._events:
            yield event
        await self._stopped.wait()

    async def stop(self) -> None:
        self._stopped.set()


async def _start(settings: Settings, **kwargs: object) -> Runtime:
    runtime = build_runtime(settings)
    await runtime.bus.start()
    await start_market(runtime, **kwargs)  # type: ignore[arg-type]
    return runtime


async def _stop(runtime: Runtime) -> None:
    await stop_market(runtime)
    await close_lease_managers(runtime)
    await runtime.bus.stop()
    if runtime.redis is not None:
        await runtime.redis.aclose()
    await runtime.db.dispose()


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_trades_reach_the_caches_the_candles_and_the_store(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    trades = binance_trades(venue="recorded")
    closing = OrderBook("recorded", "BTC/USDT", 1, ((Decimal("61650"), Decimal(1)),),
                        ((Decimal("61651"), Decimal(1)),), trades[-1].ts + timedelta(seconds=1))
    runtime = await _start(make_settings(database_url, data_dir=tmp_path, market_feed_owner=True), feed=RecordedFeed([*trades, closing]))
    service = runtime.services["market"]
    try:
        await _until(lambda: len([b for b in service.live_bars("BTC/USDT", "1m") if b.closed]) == 4)
        expected = list(expected_bars(trades, 1, "1m").values())
        assert [b for b in service.live_bars("BTC/USDT", "1m") if b.closed] == expected
        await _until(lambda: service.ticker("BTC/USDT") is not None and service.ticker("BTC/USDT").bid is not None)
        ticker = service.ticker("BTC/USDT")
        assert ticker.last == trades[-1].price and ticker.volume_24h == sum(t.quantity for t in trades)
        assert (ticker.bid, ticker.ask) == (Decimal("61650"), Decimal("61651"))
        assert service.last_price("BTC/USDT") == trades[-1].price
        assert [t.id for t in service.recent_trades("BTC/USDT", 3)] == [t.id for t in trades[::-1][:3]]
        read = await service.read_candles("BTC/USDT", "1m", expected[0].open_time, None, None)
        assert read == expected
    finally:
        await _stop(runtime)
    # stopping flushed the closed bars into the store, fenced by the lease token
    assert service.candles.read_bars("BTC/USDT", "1m") == expected


async def test_one_process_owns_the_feed_and_another_takes_over(sqlite_template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_template.fresh(tmp_path), data_dir=tmp_path / "var", lease_ttl_seconds=1.5,
                             market_feed_owner=True)
    a = await _start(settings)
    b = await _start(settings)
    try:
        owners = lambda: [rt for rt in (a, b) if feed_owner(rt).running.is_set()]  # noqa: E731
        await _until(lambda: len(owners()) == 1)
        first = owners()[0]
        other = b if first is a else a
        await asyncio.sleep(1.0)
        assert owners() == [first]  # the other keeps trying, and keeps failing
        token = feed_owner(first).fence
        await _stop(first)
        await _until(lambda: feed_owner(other).running.is_set(), timeout=15)
        assert feed_owner(other).fence > token
    finally:
        for rt in (a, b):
            if "market" in rt.services:
                await _stop(rt)


@pytest.mark.redis
async def test_replicas_report_the_same_last_price(database_url: str, redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url, data_dir=tmp_path, redis_url=redis_url, market_feed_owner=True)
    a = await _start(settings)
    b = await _start(settings)
    try:
        services = [rt.services["market"] for rt in (a, b)]
        await _until(lambda: all(s.last_price("BTC/USDT") is not None for s in services), timeout=20)
        owner = [rt for rt in (a, b) if feed_owner(rt).running.is_set()]
        assert len(owner) == 1  # one feed, two replicas that both hear it

        def agree() -> bool:
            latest = [s.recent_trades("BTC/USDT", 1) for s in services]
            return all(latest) and latest[0][0].id == latest[1][0].id and \
                services[0].last_price("BTC/USDT") == services[1].last_price("BTC/USDT")

        await _until(agree, timeout=5)
        ids = [{t.id for t in s.recent_trades("BTC/USDT", 1000)} for s in services]
        assert len(ids[0] & ids[1]) >= 0.9 * min(len(ids[0]), len(ids[1]))
    finally:
        await _stop(a)
        await _stop(b)


# -- stopping -----------------------------------------------------------------------------


class EndlessFeed(RecordedFeed):
    """Trades without pause: the owner is always publishing, never waiting for the feed."""

    async def events(self) -> AsyncIterator[MarketEvent]:
        start, i = datetime(2024, 8, 8, tzinfo=UTC), 0
        while not self._stopped.is_set():
            i += 1
            yield Trade("recorded", "BTC/USDT", str(i), Decimal(60000 + i % 7), Decimal("0.01"), "buy",
                        start + timedelta(milliseconds=50 * i))


class SwallowingBus:
    """The in-process bus, losing the first cancellation that reaches a publish — what Python
    3.11's ``asyncio.wait_for`` (inside redis-py's send) does when the cancellation arrives as
    the write completes, which behind a Redis bus happened on most stops of a live owner."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.swallowed = 0

    async def publish(self, event: Event) -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed += 1
        await self.inner.publish(event)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def _market_tasks() -> list[asyncio.Task]:  # type: ignore[type-arg]
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(("market-feed", "market-candle"))]


async def _publishing_owner(settings: Settings, store: CandleStore) -> tuple[Runtime, SwallowingBus]:
    """A runtime whose owner relays an endless feed through a :class:`SwallowingBus`."""
    runtime = build_runtime(settings)
    bus = runtime.bus = SwallowingBus(runtime.bus)  # type: ignore[assignment]
    await runtime.bus.start()
    feed = EndlessFeed([])
    service = await start_market(runtime, feed=feed)
    owner = start_feed_owner(runtime, feed, service, store)
    await _until(lambda: owner.running.is_set())
    await _until(lambda: bool(owner._pending))  # closed candles waiting for their flush
    return runtime, bus


async def test_a_stop_is_prompt_while_the_owner_publishes(sqlite_template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_template.fresh(tmp_path), data_dir=tmp_path / "var")
    # slow writes: the lease manager's cancellation arrives while the final flush is running
    store = SlowStore(Path(settings.data_dir) / "market" / "candles", "recorded", delay=0.1)
    runtime, _ = await _publishing_owner(settings, store)
    owner, service = feed_owner(runtime), runtime.services["market"]
    try:
        started = time.monotonic()
        await stop_market(runtime)
        elapsed = time.monotonic() - started
    finally:
        await _stop(runtime)
    # before the fix the cancellation was lost in the publish and this waited its 15 s timeout
    assert elapsed < 5, f"stop_market took {elapsed:.1f} s"
    assert _market_tasks() == [] and store.in_flight == 0
    # nothing acknowledged was lost: every closed candle published reached the store on the way out
    assert owner is not None and owner._pending == {}
    published = service.closed_live_bars()[("BTC/USDT", "1m")]
    stored = store.read_bars("BTC/USDT", "1m")
    assert published and set(published) <= set(stored)


async def test_a_cancellation_lost_in_a_publish_still_ends_the_owner(sqlite_template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Cancelled without ``stop_market`` (a lost lease, the event loop closing): before the fix
    the owner relayed the feed forever, and the loop's close hung on it."""
    settings = make_settings(sqlite_template.fresh(tmp_path), data_dir=tmp_path / "var")
    runtime, bus = await _publishing_owner(settings, CandleStore.for_settings(settings, "recorded"))
    _, task = runtime.services["market_owner"]
    try:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert bus.swallowed == 1  # the scenario happened: the owner never received the cancellation
        assert task.done()
    finally:
        await _stop(runtime)
    assert _market_tasks() == []


class SlowStore(CandleStore):
    """A candle store on a slow disk: every write takes ``delay`` seconds; counts what runs."""

    def __init__(self, root: Path, venue: str, delay: float) -> None:
        super().__init__(root, venue)
        self.delay = delay
        self.in_flight = 0
        self.completed = 0
        self._lock = threading.Lock()

    def write(self, symbol, timeframe, bars, *, fence=None):  # type: ignore[no-untyped-def, override]
        with self._lock:
            self.in_flight += 1
        try:
            time.sleep(self.delay)
            return super().write(symbol, timeframe, bars, fence=fence)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.completed += 1


def _heard_bars(symbols: list[str], per_timeframe: int) -> list[Bar]:
    """Closed bars of every timeframe, as a previous owner published them."""
    end = datetime(2024, 8, 8, tzinfo=UTC)
    bars = []
    for s, symbol in enumerate(symbols):
        for timeframe, seconds in TIMEFRAMES.items():
            for i in range(per_timeframe):
                price = Decimal(100 + s + i)
                bars.append(Bar(symbol, timeframe, end - timedelta(seconds=seconds * (per_timeframe - i)),
                                price, price + 2, price - 1, price + 1, Decimal(i + 1)))
    return bars


async def _consumer(settings: Settings, heard: list[Bar]) -> Runtime:
    """A replica that heard ``heard`` on the bus (no owner yet)."""
    runtime = await _start(settings, feed=RecordedFeed([]))
    service = runtime.services["market"]
    for bar in heard:
        await service._on_candle(payloads.candle_event(bar))
    return runtime


async def test_a_stop_during_a_large_takeover_write_is_prompt_and_the_next_owner_completes_it(
        sqlite_template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_template.fresh(tmp_path), data_dir=tmp_path / "var", market_feed_owner=False)
    symbols = [f"S{i}/USDT" for i in range(10)]
    heard = _heard_bars(symbols, per_timeframe=30)  # 60 (symbol, timeframe) keys: 60+ partition writes
    runtime = await _consumer(settings, heard)
    slow = SlowStore(Path(settings.data_dir) / "market" / "candles", "recorded", delay=0.1)  # 6+ s in all
    start_feed_owner(runtime, RecordedFeed([]), runtime.services["market"], slow)
    try:
        await _until(lambda: slow.completed >= 3)
        started = time.monotonic()
        await stop_market(runtime)
        elapsed = time.monotonic() - started
        in_flight = slow.in_flight  # right after stop_market: nothing may still be writing
    finally:
        await _stop(runtime)
    assert elapsed < 3, f"stop_market took {elapsed:.1f} s"
    assert in_flight == 0, "a store write outlived stop_market"
    assert slow.completed < 30  # it really was stopped half-way

    # consistent: whole partitions of heard bars, minutes first, no temporary files
    store = CandleStore.for_settings(settings, "recorded")
    expected = {(b.symbol, b.timeframe): [] for b in heard}  # type: dict[tuple[str, str], list[Bar]]
    for bar in heard:
        expected[(bar.symbol, bar.timeframe)].append(bar)
    stored = {key: store.read_bars(*key) for key in expected}
    assert all(stored[key] in ([], expected[key]) for key in expected)
    assert all(stored[(s, "1m")] for s in symbols[:3])
    assert not any(stored[key] for key in expected if key[1] != "1m") or all(stored[(s, "1m")] for s in symbols)
    assert not list(store.root.rglob("*.tmp"))

    # the next owner (a replica that heard the same bars) stores what is missing, first thing
    successor = await _consumer(settings, heard)
    start_feed_owner(successor, RecordedFeed([]), successor.services["market"], store)
    try:
        await _until(lambda: feed_owner(successor).running.is_set())
    finally:
        await _stop(successor)
    assert {key: store.read_bars(*key) for key in expected} == expected
    assert all(store.gaps(*key) == [] for key in expected)
