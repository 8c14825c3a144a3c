"""RedisBus across "replicas": same prefix shares events, another prefix is another world."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tradepilot.core.events import Event
from tradepilot.core.redis_bus import RedisBus


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


async def _bus(redis: Redis, prefix: str) -> tuple[RedisBus, list[Event]]:
    bus = RedisBus(redis, prefix=prefix)
    await bus.start()
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    await bus.subscribe("user.*", handler)
    return bus, got


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_replicas_with_one_prefix_all_receive_and_another_prefix_does_not(
    redis: Redis,
) -> None:
    prefix = f"tptest:bus:{uuid.uuid4().hex[:8]}:"
    elsewhere = f"tptest:bus:{uuid.uuid4().hex[:8]}:"
    (one, got_one), (two, got_two), (alien, got_alien) = (
        await _bus(redis, prefix),
        await _bus(redis, prefix),
        await _bus(redis, elsewhere),
    )
    try:
        event = Event(
            topic="user.u1.orders",
            type="order.created",
            payload={"price": "0.1"},
            user_id="u1",
            seq=7,
        )
        await one.publish(event)
        await one.publish(Event(topic="market.tick", type="tick.received", payload={}))  # filtered
        await _wait_for(lambda: got_one and got_two)
        assert got_one == [event] and got_two == [event]  # the publisher's own replica too

        # Same client, so Redis sees this second publication after the first: once "alien" has
        # its own event, it would already have had the first one were prefixes leaking.
        marker = Event(topic="user.u2.orders", type="order.created", payload={})
        await alien.publish(marker)
        await _wait_for(lambda: got_alien)
        assert got_alien == [marker]
        await asyncio.sleep(0.02)
        assert [e.id for e in got_one] == [event.id] and [e.id for e in got_two] == [event.id]
    finally:
        for bus in (one, two, alien):
            await bus.stop()
