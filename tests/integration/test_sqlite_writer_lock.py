"""SQLite write transactions through ``core.db``: the in-process writer lock in front of BEGIN
IMMEDIATE, the read-only snapshot path, and the driver's statement results through them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from tradepilot.core.db import Database, writer_lock


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}")

    @event.listens_for(database.engine.sync_engine, "connect")
    def _short_busy_timeout(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=200")  # the nested-use test must not wait 30 s
        cursor.close()

    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await session.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    yield database
    await database.dispose()


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(text("SELECT n FROM counter WHERE id = 1"))).scalar_one())


async def test_concurrent_read_modify_write_transactions_queue_and_lose_nothing(db: Database) -> None:
    lock = writer_lock(db.engine)
    assert lock is not None
    started: list[int] = []

    async def increment(i: int) -> None:
        async with db.transaction() as session:
            started.append(i)
            n = (await session.execute(text("SELECT n FROM counter WHERE id = 1"))).scalar_one()
            await asyncio.sleep(0.001)  # other writers run meanwhile: they must wait for us
            await session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

    tasks = []
    for i in range(30):
        tasks.append(asyncio.create_task(increment(i)))
    await asyncio.gather(*tasks)
    assert await _count(db) == 30
    assert lock.handoffs > 0  # they did queue, and were handed the lock rather than polling for it
    assert not lock.locked


async def test_an_exception_or_a_cancellation_inside_a_transaction_releases_the_lock(db: Database) -> None:
    lock = writer_lock(db.engine)
    assert lock is not None
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(text("UPDATE counter SET n = 100 WHERE id = 1"))
            raise RuntimeError("boom")
    assert not lock.locked

    entered = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as session:
            await session.execute(text("UPDATE counter SET n = 200 WHERE id = 1"))
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await entered.wait()
    assert lock.locked
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    async with db.transaction() as session:  # at once, not after a busy timeout
        await session.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))
    assert time.monotonic() - started < 1
    assert await _count(db) == 1  # both abandoned updates were rolled back
    assert not lock.locked


async def test_nested_write_transactions_in_one_task_fail_as_before_instead_of_deadlocking(db: Database) -> None:
    async with db.transaction() as outer:
        await outer.execute(text("UPDATE counter SET n = 5 WHERE id = 1"))
        with pytest.raises(OperationalError, match="locked"):
            async with asyncio.timeout(10):  # SQLite's busy timeout (200 ms here) ends it, not a hang
                async with db.transaction() as inner:
                    await inner.execute(text("UPDATE counter SET n = 6 WHERE id = 1"))
    assert await _count(db) == 5
    assert not writer_lock(db.engine).locked  # type: ignore[union-attr]


async def test_reads_neither_wait_for_a_writer_nor_can_write(db: Database) -> None:
    async with db.transaction() as writer:
        await writer.execute(text("UPDATE counter SET n = 7 WHERE id = 1"))
        async with asyncio.timeout(2):
            assert await _count(db) == 0  # the last committed snapshot, while the writer holds the lock
    assert await _count(db) == 7
    async with db.read() as session:
        with pytest.raises(OperationalError, match="readonly|read-only|query_only|attempt to write"):
            await session.execute(text("UPDATE counter SET n = 8 WHERE id = 1"))
    assert await _count(db) == 7


async def test_one_round_trip_statements_keep_rows_counts_and_row_ids(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)"))
        result = await session.execute(text("INSERT INTO item (name) VALUES ('a')"))
        assert result.lastrowid == 1
        await session.execute(text("INSERT INTO item (name) VALUES (:name)"), [{"name": "b"}, {"name": "c"}])
        updated = await session.execute(text("UPDATE item SET name = upper(name) WHERE id > 1"))
        assert updated.rowcount == 2
        rows = (await session.execute(text("SELECT id, name FROM item ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "B"), (3, "C")]
        returned = (await session.execute(text("INSERT INTO item (name) VALUES ('d') RETURNING id, name"))).one()
        assert tuple(returned) == (4, "d")
        with pytest.raises(OperationalError, match="no such table"):
            await session.execute(text("SELECT * FROM missing"))
