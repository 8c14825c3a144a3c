"""The transactional outbox on real SQLite and PostgreSQL: emit, relay, dedupe, crash safety."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from tests.integration.outbox_lease_child import Child
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.events import Event, Topics
from tradepilot.core.outbox import OutboxRelay, consume_once, emit
from tradepilot.core.outbox_models import ConsumedEvent, OutboxEvent, UserEventSeq
from tradepilot.core.outbox_setup import start_outbox, stop_outbox
from tradepilot.runtime import Runtime, build_runtime


async def _start(settings: Settings, **kw: object) -> Runtime:
    runtime = build_runtime(settings, **kw)  # type: ignore[arg-type]
    await runtime.bus.start()
    return runtime


async def _stop(runtime: Runtime) -> None:
    await stop_outbox(runtime)
    await runtime.bus.stop()
    if runtime.redis is not None:
        await runtime.redis.aclose()
    await runtime.db.dispose()


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = await _start(settings)
    yield runtime
    await _stop(runtime)


async def _collect(runtime: Runtime, pattern: str = "*") -> list[Event]:
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    await runtime.bus.subscribe(pattern, handler)
    return got


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def _outbox_rows(runtime: Runtime) -> list[OutboxEvent]:
    async with runtime.db.transaction() as s:
        return list(
            (await s.execute(select(OutboxEvent).order_by(OutboxEvent.created_at))).scalars()
        )


async def test_emit_then_relay_delivers_in_order_with_per_user_seq(rt: Runtime) -> None:
    got = await _collect(rt, "user.*")
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with rt.db.transaction() as s:
        a1 = await emit(
            s,
            topic=Topics.user(alice, "orders"),
            type="order.created",
            payload={"price": Decimal("0.10"), "qty": Decimal("1E-18"), "order": alice},
            user_id=alice,
        )
        a2 = await emit(
            s, topic=Topics.user(alice, "orders"), type="order.filled", payload={}, user_id=alice
        )
        b1 = await emit(
            s, topic=Topics.user(bob, "orders"), type="order.created", payload={}, user_id=str(bob)
        )
    async with rt.db.transaction() as s:
        a3 = await emit(
            s, topic=Topics.user(alice, "fills"), type="fill.created", payload={}, user_id=alice
        )
        system = await emit(s, topic="market.tick", type="tick.received", payload={})

    assert (a1.seq, a2.seq, a3.seq, b1.seq, system.seq) == (1, 2, 3, 1, None)
    assert a1.payload == {"price": "0.1", "qty": "0.000000000000000001", "order": str(alice)}
    assert (await _outbox_rows(rt))[0].published_at is None

    relay = OutboxRelay(rt)
    assert await relay.relay_once() == 5
    await rt.bus.drain()  # type: ignore[attr-defined]
    assert [e.id for e in got] == [a1.id, a2.id, b1.id, a3.id]  # "market.tick" is not user.*
    assert got[0] == a1  # the very same event, payload and seq included
    assert [e.seq for e in got if e.user_id == str(alice)] == [1, 2, 3]
    assert all(row.published_at is not None for row in await _outbox_rows(rt))
    assert await relay.relay_once() == 0
    assert rt.metrics.outbox_published._value.get() == 5
    assert rt.metrics.outbox_backlog._value.get() == 0


async def test_concurrent_emits_for_one_user_get_distinct_consecutive_seqs(rt: Runtime) -> None:
    user = uuid.uuid4()

    async def one() -> int:
        async with rt.db.transaction() as s:
            event = await emit(
                s, topic=Topics.user(user, "orders"), type="order.created", payload={}, user_id=user
            )
            await asyncio.sleep(0.005)  # hold the counter's row lock while others queue up
            assert event.seq is not None
            return event.seq

    seqs = await asyncio.gather(*(one() for _ in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    async with rt.db.transaction() as s:
        assert (
            await s.scalar(select(UserEventSeq.last_seq).where(UserEventSeq.user_id == user)) == 20
        )


async def test_rollback_leaves_no_event_and_no_seq_gap(rt: Runtime) -> None:
    user = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with rt.db.transaction() as s:
            await emit(
                s, topic=Topics.user(user, "orders"), type="order.created", payload={}, user_id=user
            )
            raise RuntimeError("the change failed")
    assert await _outbox_rows(rt) == []
    async with rt.db.transaction() as s:
        event = await emit(
            s, topic=Topics.user(user, "orders"), type="order.created", payload={}, user_id=user
        )
    assert event.seq == 1
    assert await OutboxRelay(rt).relay_once() == 1


async def test_payload_must_be_json(rt: Runtime) -> None:
    async with rt.db.transaction() as s:
        with pytest.raises(TypeError):
            await emit(s, topic="x", type="y", payload={"bad": object()})
    assert await _outbox_rows(rt) == []


async def test_consume_once_dedupes_without_poisoning_the_transaction(rt: Runtime) -> None:
    async with rt.db.transaction() as s:
        assert await consume_once(s, "mailer", "e1") is True
        assert await consume_once(s, "mailer", "e1") is False
        assert await consume_once(s, "ledger", "e1") is True
        await emit(s, topic="t", type="still.usable", payload={})  # the transaction still works
    async with rt.db.transaction() as s:
        assert await consume_once(s, "mailer", "e1") is False
        assert await s.scalar(select(func.count()).select_from(ConsumedEvent)) == 2
    with pytest.raises(RuntimeError):  # a receipt rolls back with the consumer's effect
        async with rt.db.transaction() as s:
            assert await consume_once(s, "mailer", "e2") is True
            raise RuntimeError
    async with rt.db.transaction() as s:
        assert await consume_once(s, "mailer", "e2") is True


async def test_relay_service_wakes_on_commit_without_waiting_for_the_poll(
    settings: Settings,
) -> None:
    # A 60 s poll: only the after-commit wake-up can deliver within the timeout below.
    rt = await _start(settings.model_copy(update={"outbox_poll_seconds": 60.0}))
    try:
        got = await _collect(rt)
        relay = await start_outbox(rt)
        await _wait_for(lambda: relay.is_holder)
        await asyncio.sleep(0.05)  # let its first (empty) pass finish and the long wait begin
        async with rt.db.transaction() as s:
            event = await emit(s, topic="system.test", type="test.emitted", payload={"n": 1})
        await _wait_for(lambda: len(got) == 1, timeout=3.0)
        assert got[0].id == event.id
    finally:
        await _stop(rt)


async def test_only_the_lease_holder_relays_and_another_replica_takes_over(
    settings: Settings,
) -> None:
    replicas = [await _start(settings), await _start(settings)]
    try:
        received = [await _collect(r) for r in replicas]
        relays = [await start_outbox(r) for r in replicas]
        await _wait_for(lambda: any(r.is_holder for r in relays))
        holder = next(i for i, r in enumerate(relays) if r.is_holder)
        other = 1 - holder
        async with replicas[other].db.transaction() as s:
            first = await emit(s, topic="system.test", type="test.one", payload={})
        await _wait_for(lambda: len(received[holder]) == 1)
        assert not relays[other].is_holder and received[other] == []

        await stop_outbox(replicas[holder])  # the holder goes away (releasing its lease)
        await _wait_for(lambda: relays[other].is_holder, timeout=5.0)
        async with replicas[other].db.transaction() as s:
            second = await emit(s, topic="system.test", type="test.two", payload={})
        await _wait_for(lambda: len(received[other]) == 1)
        assert [e.id for e in received[other]] == [second.id]
        assert [e.id for e in received[holder]] == [first.id]
    finally:
        for r in replicas:
            await _stop(r)


async def test_prune_removes_only_old_published_events_and_receipts(settings: Settings) -> None:
    clock = TestClock()
    rt = await _start(settings, clock=clock)
    try:
        async with rt.db.transaction() as s:
            await emit(s, topic="t", type="old", payload={})
            await consume_once(s, "c", "old", now=clock.now())
        relay = OutboxRelay(rt)
        assert await relay.relay_once() == 1
        clock.advance(timedelta(days=8).total_seconds())
        async with rt.db.transaction() as s:
            pending = await emit(s, topic="t", type="pending", payload={})  # unpublished: kept
            await consume_once(s, "c", "recent", now=clock.now())
        assert await relay.prune() == 2
        assert [row.id for row in await _outbox_rows(rt)] == [pending.id]
        async with rt.db.transaction() as s:
            assert list((await s.execute(select(ConsumedEvent.event_id))).scalars()) == ["recent"]
    finally:
        await _stop(rt)


async def test_relay_over_redis_bus_wakes_the_holder_on_another_replica(
    settings: Settings, redis_url: str
) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url, "outbox_poll_seconds": 60.0})
    replicas = [await _start(shared), await _start(shared)]
    try:
        received = await _collect(replicas[0], "system.*")
        relays = [await start_outbox(r) for r in replicas]
        await _wait_for(lambda: any(r.is_holder for r in relays))
        await asyncio.sleep(0.05)  # both first passes done: from now on only wake-ups relay
        non_holder = next(
            r for r, relay in zip(replicas, relays, strict=True) if not relay.is_holder
        )
        async with non_holder.db.transaction() as s:
            event = await emit(s, topic="system.test", type="test.hinted", payload={"n": 2})
        await _wait_for(lambda: len(received) == 1, timeout=3.0)
        assert received[0].id == event.id and received[0].payload == {"n": 2}
    finally:
        for r in replicas:
            await _stop(r)


@pytest.mark.slow
async def test_outbox_survives_a_kill_and_consumers_see_each_event_once(rt: Runtime) -> None:
    user = uuid.uuid4()
    child = await Child.start("emit", rt.settings.database_url, str(user))
    await child.wait_until(lambda: child.count("emitted") == 1)
    assert await child.proc.wait() == -9  # SIGKILLed right after its commit, before any relay
    emitted = child.last("emitted")
    await child.kill()

    rows = await _outbox_rows(rt)
    assert [(r.id, r.published_at) for r in rows] == [(emitted["id"], None)]

    handled: list[str] = []
    deliveries: list[str] = []

    async def consumer(event: Event) -> None:
        deliveries.append(event.id)
        async with rt.db.transaction() as s:
            if await consume_once(s, "test-consumer", event.id):
                handled.append(event.id)

    await rt.bus.subscribe(Topics.user(user, "*"), consumer)
    relay = OutboxRelay(rt)
    assert await relay.relay_once() == 1
    await rt.bus.drain()  # type: ignore[attr-defined]
    # At least once: a relay that died before marking publishes it again.
    async with rt.db.transaction() as s:
        await s.execute(update(OutboxEvent).values(published_at=None))
    assert await relay.relay_once() == 1
    await rt.bus.drain()  # type: ignore[attr-defined]
    assert deliveries == [emitted["id"], emitted["id"]]
    assert handled == [emitted["id"]]
