"""The in-process SQLite writer lock (core/writer_lock.py): FIFO hand-over, no self-deadlock,
release on every exit, bounded waits."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError

from tradepilot.core.writer_lock import WriterLock


async def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = WriterLock(timeout=5)
    holder = object()
    await lock.acquire(holder)
    order: list[int] = []

    async def writer(n: int) -> None:
        conn = object()
        await lock.acquire(conn)
        order.append(n)
        await asyncio.sleep(0)
        lock.release(conn)

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(writer(n)))
        await asyncio.sleep(0)  # queued in this order
    lock.release(holder)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert not lock.locked
    assert lock.handoffs == 5


async def test_a_newcomer_never_overtakes_a_waiter() -> None:
    lock = WriterLock(timeout=5)
    first, waiter_conn, late = object(), object(), object()
    await lock.acquire(first)
    waiting = asyncio.create_task(lock.acquire(waiter_conn))
    await asyncio.sleep(0)
    lock.release(first)  # handed to the waiter at once, before it even runs
    assert lock.owned_by(waiter_conn)
    late_task = asyncio.create_task(lock.acquire(late))
    await waiting
    await asyncio.sleep(0)
    assert not late_task.done()
    lock.release(waiter_conn)
    await late_task
    assert lock.owned_by(late)


async def test_release_is_idempotent_and_only_by_the_owner() -> None:
    lock = WriterLock(timeout=5)
    owner, other = object(), object()
    await lock.acquire(owner)
    lock.release(other)  # not the owner: nothing happens
    assert lock.owned_by(owner)
    lock.release(owner)
    lock.release(owner)
    assert not lock.locked


async def test_the_holding_task_is_recognised_for_nested_use() -> None:
    lock = WriterLock(timeout=5)
    await lock.acquire(object())
    assert lock.held_by_current_task()

    async def elsewhere() -> bool:
        return lock.held_by_current_task()

    assert await asyncio.create_task(elsewhere()) is False


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    lock = WriterLock(timeout=5)
    holder, cancelled_conn, next_conn = object(), object(), object()
    await lock.acquire(holder)
    cancelled = asyncio.create_task(lock.acquire(cancelled_conn))
    following = asyncio.create_task(lock.acquire(next_conn))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    lock.release(holder)
    await following
    assert lock.owned_by(next_conn)


async def test_a_waiter_cancelled_as_the_lock_reaches_it_passes_it_on() -> None:
    lock = WriterLock(timeout=5)
    holder, unlucky, next_conn = object(), object(), object()
    await lock.acquire(holder)
    handed = asyncio.create_task(lock.acquire(unlucky))
    following = asyncio.create_task(lock.acquire(next_conn))
    await asyncio.sleep(0)
    lock.release(holder)  # ownership moves to `handed`...
    handed.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(following, 1)
    assert lock.owned_by(next_conn)


async def test_a_wait_longer_than_the_timeout_fails_like_sqlite() -> None:
    lock = WriterLock(timeout=0.05)
    holder = object()
    await lock.acquire(holder)
    with pytest.raises(OperationalError, match="database is locked"):
        await lock.acquire(object())
    lock.release(holder)
    assert not lock.locked  # the timed-out waiter did not keep a place in the queue
