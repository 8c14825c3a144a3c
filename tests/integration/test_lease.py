"""Leases on real SQLite, PostgreSQL and Redis: one holder, fencing tokens, takeover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from tests.integration.outbox_lease_child import Child
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.lease import (
    Lease,
    LeaseLost,
    LeaseManager,
    close_lease_managers,
    lease_manager,
)
from tradepilot.core.lease_backends import (
    RELEASED_AT,
    DatabaseTTLBackend,
    PostgresAdvisoryBackend,
    build_backend,
    bump_token,
)
from tradepilot.core.lease_models import LeaseRow
from tradepilot.core.outbox import emit
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.runtime import Runtime, build_runtime


@pytest.fixture
async def rt(settings: Settings, clock: TestClock) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings, clock=clock)
    yield runtime
    await close_lease_managers(runtime)
    await runtime.db.dispose()


@pytest.fixture
async def redis_rt(settings: Settings, redis_url: str) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings.model_copy(update={"redis_url": redis_url}))
    yield runtime
    await close_lease_managers(runtime)
    await runtime.redis.aclose()
    await runtime.db.dispose()


def _ttl_manager(rt: Runtime, ttl: float) -> LeaseManager:
    return LeaseManager(DatabaseTTLBackend(rt.db, rt.clock), default_ttl=ttl)


async def _row(rt: Runtime, name: str) -> LeaseRow | None:
    async with rt.db.transaction() as s:
        return await s.get(LeaseRow, name)


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_db_ttl_lease_expires_and_renews_on_the_test_clock(
    rt: Runtime, clock: TestClock
) -> None:
    a, b = _ttl_manager(rt, 10), _ttl_manager(rt, 10)
    la = await a.acquire("feed:simulated")
    assert la is not None and la.token == 1 and la.holder == a.holder
    assert await b.acquire("feed:simulated") is None
    assert await a.acquire("feed:simulated") is None  # not re-entrant

    clock.advance(6)
    assert await la.renew()
    clock.advance(6)  # 12 s after acquisition but 6 s after renewal: still held
    assert await b.acquire("feed:simulated") is None
    clock.advance(4.5)  # 10.5 s after the renewal: expired
    lb = await b.acquire("feed:simulated")
    assert lb is not None and lb.token == 2
    assert (await _row(rt, "feed:simulated")).holder == b.holder  # type: ignore[union-attr]

    assert not await la.renew() and la.lost.is_set()
    async with rt.db.transaction() as s:
        with pytest.raises(LeaseLost):
            await la.assert_held(s)
        await lb.assert_held(s)

    await lb.release()
    assert lb.lost.is_set()
    assert (await _row(rt, "feed:simulated")).expires_at == RELEASED_AT  # type: ignore[union-attr]
    la2 = await a.acquire("feed:simulated")  # free at once after a release, no waiting
    assert la2 is not None and la2.token == 3


async def test_expired_but_not_taken_lease_can_still_be_renewed(
    rt: Runtime, clock: TestClock
) -> None:
    a = _ttl_manager(rt, 5)
    lease = await a.acquire("scheduler")
    assert lease is not None
    clock.advance(60)  # e.g. the process was paused; nobody took over meanwhile
    assert await lease.renew()  # the token is unchanged, so ownership never moved
    assert await _ttl_manager(rt, 5).acquire("scheduler") is None


async def test_stale_token_write_fails_and_a_takeover_waits_for_the_owners_write(
    rt: Runtime,
) -> None:
    manager = lease_manager(rt, "db")
    lease = await manager.acquire("matching:acct-1")
    assert lease is not None
    async with rt.db.transaction() as s:
        await lease.assert_held(s)
        takeover = asyncio.create_task(
            bump_token(rt.db, "matching:acct-1", "intruder", rt.clock.now())
        )
        await asyncio.sleep(0.2)
        assert not takeover.done()  # PostgreSQL: FOR SHARE row lock; SQLite: the write lock
        await emit(s, topic="t", type="written.as.owner", payload={})
    assert await takeover == lease.token + 1

    with pytest.raises(LeaseLost):
        async with rt.db.transaction() as s:
            await lease.assert_held(s)
            await emit(s, topic="t", type="written.by.a.zombie", payload={})
    assert lease.lost.is_set()
    async with rt.db.transaction() as s:
        types = list((await s.execute(select(OutboxEvent.type))).scalars())
    assert types == ["written.as.owner"]


async def test_run_while_held_cancels_work_on_loss_and_competes_again(
    rt: Runtime, clock: TestClock
) -> None:
    manager = _ttl_manager(rt, 0.3)  # renewed every 0.1 s (real time); expiry on the test clock
    started: list[int] = []
    cancelled: list[int] = []

    async def work(lease: Lease) -> None:
        started.append(lease.token)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(lease.token)
            raise

    runner = asyncio.create_task(manager.run_while_held("strategy:42", work, retry_every=0.02))
    await _wait_for(lambda: started == [1])
    # Another process takes over (what its acquisition does): our next renewal is refused.
    await bump_token(rt.db, "strategy:42", "other-process", clock.now() + timedelta(seconds=0.3))
    await _wait_for(lambda: cancelled == [1])
    assert started == [1]
    clock.advance(1)  # the other holder's lease expires unrenewed
    await _wait_for(lambda: started == [1, 3])

    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert cancelled == [1, 3]
    assert (await _row(rt, "strategy:42")).expires_at == RELEASED_AT  # type: ignore[union-attr]
    assert manager.held() == {}


async def test_run_while_held_returns_when_work_finishes_and_retries_when_it_fails(
    rt: Runtime,
) -> None:
    manager = _ttl_manager(rt, 5)
    calls: list[int] = []

    async def flaky(lease: Lease) -> None:
        calls.append(lease.token)
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    await asyncio.wait_for(
        manager.run_while_held("job:nightly", flaky, retry_every=0.01), timeout=5
    )
    assert calls == [1, 2]
    assert manager.held() == {}
    assert (await manager.acquire("job:nightly")) is not None


@pytest.mark.parametrize("db_backend", ["postgres"])  # advisory locks are PostgreSQL's
async def test_postgres_advisory_lease_moves_at_once_when_its_connection_dies(rt: Runtime) -> None:
    a = lease_manager(rt)
    assert a.kind == "postgres"
    b = LeaseManager(build_backend(rt, "postgres"), default_ttl=0.3)  # another process
    try:
        la = await a.acquire("feed:binance")
        assert la is not None and la.token == 1
        assert await b.acquire("feed:binance") is None
        assert await la.renew()
        await la.release()
        started: list[Lease] = []

        async def work(lease: Lease) -> None:
            started.append(lease)
            await asyncio.Event().wait()

        # b's keeper checks its connection every 0.1 s; after a loss b waits 30 s to compete
        # again, so that a is the one to take over below.
        runner = asyncio.create_task(b.run_while_held("feed:binance", work, retry_every=30))
        await _wait_for(lambda: len(started) == 1)
        lb = started[0]
        assert lb.token == 2
        assert isinstance(b.backend, PostgresAdvisoryBackend)
        pid = await b.backend._scalar("SELECT pg_backend_pid()", {})
        async with rt.db.transaction() as s:  # the holder's lock connection breaks
            await s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await _wait_for(lambda: lb.lost.is_set(), timeout=3)  # the holder notices by itself
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3  # the server drops the lock as soon as that backend exits
        while (la2 := await a.acquire("feed:binance")) is None:
            assert loop.time() < deadline, "the advisory lock outlived its connection"
            await asyncio.sleep(0.01)
        assert la2.token == 3
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        async with rt.db.transaction() as s:
            await la2.assert_held(s)
            with pytest.raises(LeaseLost):
                await lb.assert_held(s)
    finally:
        await b.close()


async def _terminate(rt: Runtime, pid: int) -> None:
    """Kill one server backend and wait until it is gone."""
    async with rt.db.transaction() as s:
        await s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(300):
        async with rt.db.transaction() as s:
            alive = await s.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
        if not alive:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("backend did not terminate")


@pytest.mark.parametrize("db_backend", ["postgres"])
async def test_postgres_lease_connection_is_reopened_after_it_broke(rt: Runtime) -> None:
    manager = lease_manager(rt)
    lease = await manager.acquire("scheduler")
    assert lease is not None
    await lease.release()
    assert isinstance(manager.backend, PostgresAdvisoryBackend)
    await _terminate(rt, await manager.backend._scalar("SELECT pg_backend_pid()", {}))
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a dead socket
        await manager.acquire("scheduler")
    again = await manager.acquire("scheduler")  # a fresh connection; nothing left stuck
    assert again is not None and again.token == 2


async def test_redis_lease_acquire_renew_release_and_takeover(redis_rt: Runtime) -> None:
    a = lease_manager(redis_rt, "redis")
    b = LeaseManager(build_backend(redis_rt, "redis"), default_ttl=0.2)
    la = await a.acquire("alerts", ttl=5)
    assert la is not None and la.token == 1
    key = redis_rt.key("lease", "alerts")
    assert 0 < await redis_rt.redis.pttl(key) <= 5000
    assert await b.acquire("alerts") is None
    assert await la.renew()

    await la.release()
    assert await redis_rt.redis.exists(key) == 0
    lb = await b.acquire("alerts")
    assert lb is not None and lb.token == 2

    await asyncio.sleep(0.3)  # b stops renewing (as if paused): Redis expires the key
    la2 = await a.acquire("alerts", ttl=5)
    assert la2 is not None and la2.token == 3
    assert not await lb.renew() and lb.lost.is_set()
    await lb.release()  # compare-and-delete: must not delete a's key
    assert await redis_rt.redis.exists(key) == 1
    async with redis_rt.db.transaction() as s:
        await la2.assert_held(s)
        with pytest.raises(LeaseLost):
            await lb.assert_held(s)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "redis"])
async def test_one_holder_across_processes_and_takeover_when_the_holder_is_killed(
    rt: Runtime, db_backend: str, backend: str, request: pytest.FixtureRequest
) -> None:
    extra: list[str] = []
    if backend == "redis":
        extra = [request.getfixturevalue("redis_url"), rt.settings.redis_prefix]
    advisory = backend == "auto" and db_backend == "postgres"
    # With advisory locks the TTL only paces health checks: a long one proves that the
    # takeover does not wait for an expiry.
    ttl = 30.0 if advisory else 1.0
    name = "kill-test"
    args = ["lease", rt.settings.database_url, name, backend, str(ttl), *extra]
    children = [await Child.start(*args), await Child.start(*args)]
    try:
        await _wait_for(lambda: sum(c.count("held") for c in children) == 1, timeout=20)
        holder = next(c for c in children if c.count("held"))
        other = next(c for c in children if c is not holder)
        seen = other.count("busy")
        await other.wait_until(lambda: other.count("busy") >= seen + 3)  # it keeps trying, in vain
        assert other.count("held") == 0 and holder.count("held") == 1
        first = holder.last("held")
        assert (await _row(rt, name)).holder == first["holder"]  # type: ignore[union-attr]

        killed_at = time.monotonic()
        await holder.kill()
        await other.wait_until(lambda: other.count("held") == 1, timeout=20)
        waited = time.monotonic() - killed_at
        second = other.last("held")
        assert second["token"] > first["token"]  # type: ignore[operator]
        if advisory:
            assert waited < 10, f"advisory-lock takeover took {waited:.1f}s"

        stale = Lease(
            name=name,
            holder=str(first["holder"]),
            token=int(first["token"]),  # type: ignore[call-overload]
            ttl=ttl,
            backend=DatabaseTTLBackend(rt.db, rt.clock),
        )
        with pytest.raises(LeaseLost):
            async with rt.db.transaction() as s:
                await stale.assert_held(s)
                await emit(s, topic="t", type="zombie.write", payload={})
        current = Lease(
            name=name,
            holder=str(second["holder"]),
            token=int(second["token"]),  # type: ignore[call-overload]
            ttl=ttl,
            backend=DatabaseTTLBackend(rt.db, rt.clock),
        )
        async with rt.db.transaction() as s:
            await current.assert_held(s)
            await emit(s, topic="t", type="owner.write", payload={})
        async with rt.db.transaction() as s:
            assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 1
    finally:
        for child in children:
            await child.kill()
