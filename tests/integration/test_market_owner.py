"""The feed's owner: one process per venue, events on the bus, caches on every replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.market_support import binance_trades
from tests.support import make_settings
from tests.unit.test_market_builder import expected_bars
from tradepilot.config import Settings
from tradepilot.core.lease import close_lease_managers
from tradepilot.market.setup import feed_owner, start_market, stop_market
from tradepilot.market.types import Instrument, MarketEvent, OrderBook
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
