"""The three ways of deciding who holds a lease; the fencing token is always in the database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tradepilot.core.clock import Clock
from tradepilot.core.db import Database
from tradepilot.core.lease import Lease
from tradepilot.core.lease_models import LeaseRow

if TYPE_CHECKING:
    from tradepilot.core.lease import LeaseBackend
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.lease")

RELEASED_AT = datetime(1970, 1, 1, tzinfo=timezone.utc)  # "expired long ago": free to take


def _insert(db: Database) -> Any:
    return postgresql.insert if db.dialect == "postgresql" else sqlite.insert


async def bump_token(db: Database, name: str, holder: str, expires_at: datetime) -> int:
    """Record a change of ownership: holder := ``holder``, token := token + 1 (1 if new)."""
    stmt = (
        _insert(db)(LeaseRow)
        .values(name=name, holder=holder, token=1, expires_at=expires_at)
        .on_conflict_do_update(
            index_elements=[LeaseRow.name],
            set_={"holder": holder, "token": LeaseRow.token + 1, "expires_at": expires_at},
        )
        .returning(LeaseRow.token)
    )
    async with db.transaction() as session:
        return (await session.execute(stmt)).scalar_one()


class DatabaseTTLBackend:
    """A row per lease with an expiry: taken when expired (or already ours), renewed by the holder.

    Time comes from the runtime's clock, so tests can expire a lease without sleeping. Clocks
    of competing processes should agree within a fraction of the TTL; the fencing token keeps
    writes safe even when they do not.
    """

    kind = "db"

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        now = self.clock.now()
        expires_at = now + timedelta(seconds=ttl)
        stmt = (
            _insert(self.db)(LeaseRow)
            .values(name=name, holder=holder, token=1, expires_at=expires_at)
            .on_conflict_do_update(
                index_elements=[LeaseRow.name],
                set_={"holder": holder, "token": LeaseRow.token + 1, "expires_at": expires_at},
                where=or_(LeaseRow.expires_at < now, LeaseRow.holder == holder),
            )
            .returning(LeaseRow.token)
        )
        async with self.db.transaction() as session:
            token = (await session.execute(stmt)).scalar_one_or_none()
        if token is None:
            return None
        return Lease(name=name, holder=holder, token=token, ttl=ttl, backend=self)

    async def renew(self, lease: Lease) -> bool:
        stmt = (
            update(LeaseRow)
            .where(LeaseRow.name == lease.name, LeaseRow.holder == lease.holder,
                   LeaseRow.token == lease.token)
            .values(expires_at=self.clock.now() + timedelta(seconds=lease.ttl))
            .execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            result = await session.execute(stmt)
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, lease: Lease) -> None:
        stmt = (
            update(LeaseRow)
            .where(LeaseRow.name == lease.name, LeaseRow.holder == lease.holder,
                   LeaseRow.token == lease.token)
            .values(expires_at=RELEASED_AT)
            .execution_options(synchronize_session=False)
        )
        async with self.db.transaction() as session:
            await session.execute(stmt)

    async def close(self) -> None:
        return None


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` (namespaced to this application)."""
    digest = hashlib.blake2b(f"tradepilot.lease:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresAdvisoryBackend:
    """Session advisory locks on one dedicated connection per process.

    The connection is opened on first use and kept (in autocommit) while the process lives;
    if it breaks, every lease taken through it is marked lost at once (the server drops the
    locks with the session). Server-side TCP keepalives are tightened on that connection so
    the server also notices a vanished peer (network partition) within about half a minute.
    """

    kind = "postgres"

    def __init__(self, db: Database, clock: Clock, *, query_timeout: float = 5.0) -> None:
        self.db = db
        self.clock = clock
        self.query_timeout = query_timeout
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._leases: dict[str, Lease] = {}

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            if self._engine is None:
                self._engine = create_async_engine(
                    self.db.url,
                    poolclass=NullPool,
                    isolation_level="AUTOCOMMIT",
                    connect_args={"server_settings": {
                        "application_name": "tradepilot-lease",
                        "tcp_keepalives_idle": "10",
                        "tcp_keepalives_interval": "5",
                        "tcp_keepalives_count": "3",
                    }},
                )
            self._conn = await self._engine.connect()
        return self._conn

    async def _locked_scalar(self, sql: str,
                             params: dict[str, Any]) -> tuple[Any, AsyncConnection]:
        async with self._lock:
            try:
                conn = await self._connection()
                return (await conn.execute(text(sql), params)).scalar(), conn
            except BaseException as exc:
                await self._discard(f"lease connection failed: {exc!r}")
                raise

    async def _scalar_on(self, sql: str, params: dict[str, Any]) -> tuple[Any, AsyncConnection]:
        """The result, and the connection (server session) it came from."""
        # Shielded: a caller cancelled mid-query must not leave the shared connection in an
        # unknown state; the query completes (or times out, which discards the connection).
        inner = asyncio.ensure_future(self._locked_scalar(sql, params))
        try:
            return await asyncio.wait_for(asyncio.shield(inner), self.query_timeout)
        except asyncio.TimeoutError:
            inner.cancel()
            with contextlib.suppress(BaseException):
                await inner
            raise

    async def _scalar(self, sql: str, params: dict[str, Any]) -> Any:
        return (await self._scalar_on(sql, params))[0]

    async def _discard(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        leases, self._leases = self._leases, {}
        for lease in leases.values():
            lease.mark_lost(reason)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        key = advisory_key(name)
        locked, locked_on = await self._scalar_on("SELECT pg_try_advisory_lock(:k)", {"k": key})
        if not locked:
            return None
        try:
            expires_at = self.clock.now() + timedelta(seconds=ttl)
            token = await bump_token(self.db, name, holder, expires_at)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._scalar("SELECT pg_advisory_unlock(:k)", {"k": key})
            raise
        lease = Lease(name=name, holder=holder, token=token, ttl=ttl, backend=self, state=key)
        if self._conn is not locked_on:
            lease.mark_lost("lease connection lost while acquiring")  # the lock went with it
        else:
            self._leases[name] = lease
        return lease

    async def renew(self, lease: Lease) -> bool:
        """The lock cannot expire; check the connection is alive and the token still ours."""
        if self._leases.get(lease.name) is not lease:
            return False
        try:
            token = await self._scalar("SELECT token FROM lease WHERE name = :n",
                                       {"n": lease.name})
        except Exception:
            return False  # the connection is gone, and our lock with it
        return token == lease.token

    async def release(self, lease: Lease) -> None:
        if self._leases.get(lease.name) is not lease:
            return  # its connection is gone, and the lock with it
        del self._leases[lease.name]
        if not await self._scalar("SELECT pg_advisory_unlock(:k)", {"k": lease.state}):
            async with self._lock:  # lock counts out of step: start afresh
                await self._discard("advisory unlock refused")

    async def close(self) -> None:
        async with self._lock:
            await self._discard("lease manager closed")
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


_RENEW_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLeaseBackend:
    """``SET key value NX PX ttl``; the value is unique per acquisition, renew and release
    compare it first (Lua, atomic). The fencing token is still bumped in the database."""

    kind = "redis"

    def __init__(self, redis: Any, db: Database, clock: Clock, *, key_prefix: str) -> None:
        self.redis = redis
        self.db = db
        self.clock = clock
        self.key_prefix = key_prefix
        self._renew = redis.register_script(_RENEW_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)

    def key(self, name: str) -> str:
        return f"{self.key_prefix}{name}"

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None:
        value = f"{holder}#{secrets.token_hex(8)}"
        key = self.key(name)
        if not await self.redis.set(key, value, nx=True, px=max(int(ttl * 1000), 1)):
            return None
        try:
            expires_at = self.clock.now() + timedelta(seconds=ttl)
            token = await bump_token(self.db, name, holder, expires_at)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._release(keys=[key], args=[value])
            raise
        return Lease(name=name, holder=holder, token=token, ttl=ttl, backend=self, state=value)

    async def renew(self, lease: Lease) -> bool:
        ttl_ms = max(int(lease.ttl * 1000), 1)
        result = await self._renew(keys=[self.key(lease.name)], args=[lease.state, ttl_ms])
        return bool(result)

    async def release(self, lease: Lease) -> None:
        await self._release(keys=[self.key(lease.name)], args=[lease.state])

    async def close(self) -> None:
        return None


def build_backend(runtime: Runtime, kind: str) -> LeaseBackend:
    if kind == "db":
        return DatabaseTTLBackend(runtime.db, runtime.clock)
    if kind == "postgres":
        if runtime.db.dialect != "postgresql":
            raise ValueError("the postgres lease backend needs a PostgreSQL database")
        return PostgresAdvisoryBackend(runtime.db, runtime.clock)
    if kind == "redis":
        if runtime.redis is None:
            raise ValueError("the redis lease backend needs TRADEPILOT_REDIS_URL")
        return RedisLeaseBackend(runtime.redis, runtime.db, runtime.clock,
                                 key_prefix=runtime.key("lease", ""))
    raise ValueError(f"unknown lease backend {kind!r} (postgres, db or redis)")
