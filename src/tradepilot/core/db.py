"""Async engine, session factory and the declarative base shared by every domain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.util.concurrency import await_, in_greenlet

from tradepilot.core.types import UTCDateTime
from tradepilot.core.writer_lock import WriterLock

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # SQLite's busy handler: the wait for another *process*'s write lock

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def new_id() -> uuid.UUID:
    """Random, non-enumerable primary keys: ids in URLs reveal nothing about other users."""
    return uuid.uuid4()


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine configured for safety: SQLite in WAL with full fsync and real transactions."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, **_sqlite_options(url))
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def create_read_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """SQLite only: an engine for read-only work. Its transactions begin deferred (a WAL snapshot,
    no write lock, never waiting behind a writer) and its connections refuse to write
    (``PRAGMA query_only``), so a write sent through it fails loudly instead of racing."""
    engine = create_async_engine(url, echo=echo, **_sqlite_options(url))

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")  # deferred: a read snapshot from the first SELECT on

    return engine


def _sqlite_options(url: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}


def writer_lock(engine: AsyncEngine) -> WriterLock | None:
    """The engine's in-process SQLite writer lock (``core.writer_lock``); None on PostgreSQL."""
    return engine.sync_engine.dialect.__dict__.get("tradepilot_writer_lock")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when transactions begin (SQLAlchemy docs'
        # recipe for pysqlite/aiosqlite), so BEGIN IMMEDIATE below really serialises writers.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    lock = WriterLock(timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
    dialect = engine.sync_engine.dialect
    dialect.tradepilot_writer_lock = lock  # type: ignore[attr-defined]

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front: two transactions can never both read a
        # balance and then both spend it, and no deferred upgrade can deadlock. The
        # process's writer lock queues this process's writers first (FIFO hand-over instead
        # of SQLite's polling busy handler); see core/writer_lock.py.
        dbapi_connection = conn.connection.dbapi_connection
        if in_greenlet() and not lock.held_by_current_task():
            await_(lock.acquire(dbapi_connection))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            lock.release(dbapi_connection)
            raise

    # The lock is released once the transaction has really ended (after COMMIT / ROLLBACK,
    # which SQLAlchemy's events only announce before), and, as a safety net, whenever the
    # connection goes back to the pool, is closed or is invalidated.
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def _commit(connection: Any) -> None:
        do_commit(connection)
        lock.release(_dbapi(connection))

    def _rollback(connection: Any) -> None:
        try:
            do_rollback(connection)
        finally:
            lock.release(_dbapi(connection))

    dialect.do_commit = _commit  # type: ignore[method-assign]
    dialect.do_rollback = _rollback  # type: ignore[method-assign]

    def _release(dbapi_connection, *_args):  # type: ignore[no-untyped-def]
        lock.release(dbapi_connection)

    for name in ("checkin", "close", "invalidate", "soft_invalidate", "detach", "close_detached"):
        event.listen(engine.sync_engine, name, _release)


def _dbapi(connection: Any) -> Any:
    """The DBAPI connection behind a pool proxy (what the ``begin`` event recorded as owner)."""
    return getattr(connection, "dbapi_connection", connection)


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._echo = echo
        self._read_engine: AsyncEngine | None = None
        self._read_sessionmaker: async_sessionmaker[AsyncSession] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for read-only work (one consistent snapshot until it ends).

        On SQLite it comes from a second, read-only engine whose transactions begin deferred:
        it reads a WAL snapshot without taking the write lock, so reads neither wait behind
        writers nor make them wait; a write through it fails (``query_only``). On PostgreSQL
        (MVCC: readers never block writers) it is an ordinary session. Never use it for
        anything a later write in the same operation depends on: read that under the lock.
        """
        if self._read_sessionmaker is None:
            if self.dialect == "sqlite":
                self._read_engine = create_read_engine(self.url, echo=self._echo)
                self._read_sessionmaker = async_sessionmaker(self._read_engine, expire_on_commit=False)
            else:
                self._read_sessionmaker = self.sessionmaker
        async with self._read_sessionmaker() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._read_engine is not None:
            await self._read_engine.dispose()
            self._read_engine = self._read_sessionmaker = None
        await self.engine.dispose()
