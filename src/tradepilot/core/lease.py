"""Exactly one owner per moving part, across processes, with fencing tokens (DESIGN §1.7).

A lease is a named ownership ("outbox-relay", "feed:binance", "matching:<account>"...). Three
backends decide who owns it:

* ``postgres`` — ``pg_try_advisory_lock`` on one dedicated connection per process: the lock
  vanishes the moment the process (or its connection) dies, so a survivor takes over at once;
* ``db`` — a TTL row in the ``lease`` table (SQLite default; works across processes): the
  holder renews before expiry, anyone takes an expired lease;
* ``redis`` — ``SET NX PX`` plus compare-and-renew / compare-and-delete scripts.

Whatever the backend, the fencing token lives in the ``lease`` row and is bumped each time
ownership changes, so that :meth:`Lease.assert_held` can check it *inside the owner's write
transaction*: a process that lost its lease (paused, partitioned, slow) cannot write as owner.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.clock import Clock
from tradepilot.core.lease_models import LeaseRow

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.lease")

MAX_NAME_LENGTH = 128
DEFAULT_RETRY_SECONDS = 1.0
_MANAGER_KEY = "lease_manager:"


class LeaseLost(Exception):
    """The lease is no longer held by this process: it must not write as owner."""


class LeaseBackend(Protocol):
    kind: str
    clock: Clock

    async def acquire(self, name: str, holder: str, ttl: float) -> Lease | None: ...
    async def renew(self, lease: Lease) -> bool: ...
    async def release(self, lease: Lease) -> None: ...
    async def close(self) -> None: ...


class Lease:
    """A held lease. ``token`` strictly increases each time ownership of ``name`` changes."""

    def __init__(self, *, name: str, holder: str, token: int, ttl: float, backend: LeaseBackend,
                 state: Any = None) -> None:
        self.name = name
        self.holder = holder
        self.token = token
        self.ttl = ttl
        self.lost = asyncio.Event()  # set when the lease is known lost (or released)
        self.state = state  # backend-specific (the Redis value, the advisory key)
        self._backend = backend
        self._released = False
        self._on_release: Callable[[Lease], None] | None = None
        self.renewed_at = backend.clock.monotonic()

    def __repr__(self) -> str:
        status = "released" if self._released else "lost" if self.lost.is_set() else "held"
        return f"<Lease {self.name!r} token={self.token} holder={self.holder!r} {status}>"

    @property
    def held(self) -> bool:
        return not self.lost.is_set()

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            if not self._released:
                logger.warning("lease lost",
                               extra={"lease": self.name, "token": self.token, "reason": reason})
            self.lost.set()

    async def renew(self) -> bool:
        """Extend the lease; False (and ``lost`` set) when it is no longer ours."""
        if self.lost.is_set():
            return False
        started = self._backend.clock.monotonic()
        ok = await self._backend.renew(self)
        if ok:
            self.renewed_at = started
        else:
            self.mark_lost("renewal refused")
        return ok

    async def release(self) -> None:
        """Give the lease up (idempotent). The token stays in the row, so it keeps growing."""
        if self._released:
            return
        self._released = True
        self.lost.set()
        try:
            await self._backend.release(self)
        except Exception:
            logger.warning("lease release failed (it will expire)", extra={"lease": self.name},
                           exc_info=True)
        finally:
            if self._on_release is not None:
                self._on_release(self)

    async def assert_held(self, session: AsyncSession) -> None:
        """Fencing check inside the caller's write transaction.

        Raises :class:`LeaseLost` unless the lease row still carries this lease's token. On
        PostgreSQL the row is locked ``FOR SHARE`` until the caller's transaction ends, so a
        takeover (which bumps the token) waits for the write instead of interleaving with it;
        on SQLite every write transaction is already serialised (``BEGIN IMMEDIATE``).
        """
        if self._released or self.lost.is_set():
            raise LeaseLost(f"lease {self.name!r} (token {self.token}) is no longer held")
        token = await current_token(session, self.name, lock=True)
        if token != self.token:
            self.mark_lost(f"token is now {token}")
            raise LeaseLost(f"lease {self.name!r}: token {self.token} was superseded by {token}")


async def current_token(session: AsyncSession, name: str, *, lock: bool = False) -> int | None:
    """The fencing token of ``name`` as the caller's transaction sees it (None: never held)."""
    stmt = select(LeaseRow.token).where(LeaseRow.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    return (await session.execute(stmt)).scalar_one_or_none()


def make_holder_id() -> str:
    """``hostname:pid:random`` — unique per manager, readable in the lease table."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(6)}"


class LeaseManager:
    """Acquires leases for this process (one holder id) and keeps held ones renewed."""

    def __init__(self, backend: LeaseBackend, *, default_ttl: float,
                 holder: str | None = None) -> None:
        self.backend = backend
        self.default_ttl = default_ttl
        self.holder = holder or make_holder_id()
        self._held: dict[str, Lease] = {}
        self._acquiring: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._closed = False

    @property
    def kind(self) -> str:
        return self.backend.kind

    def held(self) -> dict[str, Lease]:
        """The leases this manager currently holds, by name."""
        return {name: lease for name, lease in self._held.items() if lease.held}

    async def acquire(self, name: str, *, ttl: float | None = None) -> Lease | None:
        """Try once, without waiting: the lease, or None when another holder has it.

        Not re-entrant: while this manager holds ``name``, a second acquire returns None.
        """
        if not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"lease name must be 1..{MAX_NAME_LENGTH} characters")
        if self._closed:
            raise RuntimeError("lease manager is closed")
        current = self._held.get(name)
        if current is not None:
            if current.held:
                return None
            await current.release()  # lost: tidy up, then compete again
        if name in self._acquiring:
            return None
        self._acquiring.add(name)
        # The backend's work runs shielded: if our caller is cancelled half-way, a lease that
        # was nevertheless obtained is released instead of being left dangling.
        ttl = ttl or self.default_ttl
        attempt = asyncio.ensure_future(self.backend.acquire(name, self.holder, ttl))
        try:
            lease = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(self._release_orphan)
            self._background.add(attempt)  # close() waits for it
            attempt.add_done_callback(self._background.discard)
            raise
        finally:
            self._acquiring.discard(name)
        if lease is not None:
            lease._on_release = self._forget
            self._held[name] = lease
            logger.info("lease acquired",
                        extra={"lease": name, "token": lease.token, "backend": self.kind})
        return lease

    def _forget(self, lease: Lease) -> None:
        if self._held.get(lease.name) is lease:
            del self._held[lease.name]

    def _release_orphan(self, attempt: asyncio.Future[Lease | None]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            return
        lease = attempt.result()
        if lease is not None:
            task = asyncio.get_running_loop().create_task(lease.release())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def run_while_held(
        self,
        name: str,
        work: Callable[[Lease], Awaitable[None]],
        *,
        retry_every: float = DEFAULT_RETRY_SECONDS,
        ttl: float | None = None,
    ) -> None:
        """Own ``name`` whenever possible and run ``work(lease)`` while owning it.

        Keeps trying to acquire (every ``retry_every`` seconds); once held, runs ``work`` and
        renews in the background every ttl/3. If the lease is lost, ``work`` is cancelled and
        the loop competes again. If ``work`` returns, the lease is released and this returns;
        if it raises, the error is logged and the loop competes again after ``retry_every``.
        Cancelling this coroutine cancels ``work`` and releases the lease; closing the manager
        makes it return.
        """
        while not self._closed:
            try:
                lease = await self.acquire(name, ttl=ttl)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("lease acquisition failed", extra={"lease": name}, exc_info=True)
                lease = None
            if lease is None:
                logger.debug("lease busy; retrying", extra={"lease": name, "retry_in": retry_every})
                await asyncio.sleep(retry_every)
                continue
            if await self._run_held(lease, work):
                return
            await asyncio.sleep(retry_every)

    async def _run_held(self, lease: Lease, work: Callable[[Lease], Awaitable[None]]) -> bool:
        """Run ``work`` under ``lease``; True if it finished normally."""
        work_task = asyncio.ensure_future(work(lease))
        keeper = asyncio.ensure_future(self._keep_renewed(lease))
        lost = asyncio.ensure_future(lease.lost.wait())
        try:
            await asyncio.wait({work_task, lost}, return_when=asyncio.FIRST_COMPLETED)
            if lease.lost.is_set():  # whatever work did meanwhile (it may have hit LeaseLost)
                logger.warning("lease lost: stopping its work",
                               extra={"lease": lease.name, "token": lease.token})
                return False
            if work_task.cancelled():
                return False
            error = work_task.exception()
            if error is not None:
                logger.error("work under lease failed", extra={"lease": lease.name},
                             exc_info=(type(error), error, error.__traceback__))
                return False
            return True
        finally:
            for task in (work_task, keeper, lost):
                task.cancel()
            await asyncio.gather(work_task, keeper, lost, return_exceptions=True)
            await lease.release()

    async def _keep_renewed(self, lease: Lease) -> None:
        interval = lease.ttl / 3
        clock = self.backend.clock
        while not lease.lost.is_set():
            await asyncio.sleep(interval)
            remaining = lease.ttl - (clock.monotonic() - lease.renewed_at)
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the renewal completes, and this loop would
                # then never stop (docs/market-feeds.md, "Stopping the feed owner")
                async with asyncio.timeout(max(remaining, interval / 4)):
                    renewed = await lease.renew()
                if not renewed:
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("lease renewal failed", extra={"lease": lease.name}, exc_info=True)
                if clock.monotonic() - lease.renewed_at >= lease.ttl:
                    lease.mark_lost("not renewed within its TTL")
                    return

    async def close(self) -> None:
        """Release every lease held by this manager and close the backend."""
        self._closed = True
        for lease in list(self._held.values()):
            await lease.release()
        while self._background:  # cancelled acquisitions finishing, orphans being released
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.backend.close()


def lease_manager(runtime: Runtime, backend: str | None = None) -> LeaseManager:
    """The runtime's lease manager (one per backend, created on first use).

    Default backend: ``postgres`` (advisory locks) on PostgreSQL, ``db`` (TTL rows) on SQLite.
    ``backend="redis"`` uses ``runtime.redis``; ``backend="db"`` forces TTL rows on any
    database. Every process competing for a given lease name must use the same backend.
    """
    from tradepilot.core.lease_backends import build_backend

    kind = backend or ("postgres" if runtime.db.dialect == "postgresql" else "db")
    key = _MANAGER_KEY + kind
    manager = runtime.services.get(key)
    if manager is None:
        manager = LeaseManager(build_backend(runtime, kind),
                               default_ttl=runtime.settings.lease_ttl_seconds)
        runtime.services[key] = manager
    return manager


async def close_lease_managers(runtime: Runtime) -> None:
    """Release all leases and close the lease connections of this runtime (at shutdown)."""
    for key in [k for k in runtime.services if k.startswith(_MANAGER_KEY)]:
        manager: LeaseManager = runtime.services.pop(key)
        try:
            await manager.close()
        except Exception:
            logger.warning("closing lease manager failed", extra={"backend": key}, exc_info=True)
