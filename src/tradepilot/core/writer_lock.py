"""One SQLite write transaction at a time per engine, handed over in FIFO order.

SQLite allows one writer per database file. Every write transaction begins with ``BEGIN
IMMEDIATE`` (``core.db``), and a connection that finds the write lock taken waits in
SQLite's busy handler, which *polls*: it sleeps 1, 2, 5 … up to 100 ms between retries. Under
load, a lock released between two polls stays idle until the next poll, and a waiter that is
unlucky keeps losing to later ones (no queue): throughput drops and the p99 grows to seconds.

:class:`WriterLock` puts an in-process queue in front of ``BEGIN IMMEDIATE``: a connection
about to begin a write transaction first waits its turn here (an ``asyncio`` future, no
polling), and the transaction's COMMIT or ROLLBACK hands the lock straight to the next
waiter. Within one process SQLite's lock is then (almost) always free when ``BEGIN
IMMEDIATE`` runs; the busy handler stays as the fallback between *processes* (two servers
on one file), where this lock cannot help.

Rules that keep it safe:

* **FIFO, direct hand-over**: a release gives the lock to the oldest waiter; a newcomer
  never barges in front of the queue.
* **No deadlock on nested use**: a task that already holds the lock and begins a second write
  transaction on another connection (a bug on SQLite either way) does not wait here; its
  ``BEGIN IMMEDIATE`` meets SQLite's busy timeout and fails as it always did, instead of
  waiting forever on itself.
* **Bounded wait**: a waiter gives up after ``timeout`` seconds (the busy timeout) with
  ``database is locked``, like SQLite itself would.
* **Released on every exit**: COMMIT, ROLLBACK (also the pool's reset of a connection that
  an exception or a cancellation abandoned), and the connection's close or invalidation.
  A waiter cancelled at the moment the lock was handed to it passes it on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from typing import Any

from sqlalchemy.exc import OperationalError


class WriterLock:
    """A FIFO lock owned by a DBAPI connection (the one whose transaction holds it)."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._owner: Any = None  # the DBAPI connection whose transaction holds the lock
        self._owner_task: asyncio.Task[Any] | None = None
        self._locked = False
        self._waiters: deque[tuple[asyncio.Future[None], Any, asyncio.Task[Any] | None]] = deque()
        self.handoffs = 0  # acquisitions that had to wait (for tests and diagnostics)

    @property
    def locked(self) -> bool:
        return self._locked

    def held_by_current_task(self) -> bool:
        task = _current_task()
        return self._locked and task is not None and self._owner_task is task

    def owned_by(self, connection: Any) -> bool:
        return self._locked and self._owner is connection

    async def acquire(self, connection: Any) -> None:
        """Wait (FIFO) until ``connection`` holds the lock."""
        task = _current_task()
        if not self._locked and not self._waiters:
            self._locked, self._owner, self._owner_task = True, connection, task
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (waiter, connection, task)
        self._waiters.append(entry)
        timer = loop.call_later(self.timeout, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._pass_on()  # handed to us just as we were cancelled: hand it to the next one
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
            if waiter.done() and not waiter.cancelled() and isinstance(waiter.exception(), TimeoutError):
                raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
                    f"database is locked (waited {self.timeout:g} s for this process's writer lock)")) from None
            raise
        finally:
            timer.cancel()
        self.handoffs += 1

    def release(self, connection: Any) -> None:
        """Release if ``connection`` holds the lock (idempotent: every end of a transaction calls it)."""
        if self._locked and self._owner is connection:
            self._pass_on()

    def _pass_on(self) -> None:
        """Hand the lock to the oldest live waiter (ownership moves now, so nobody can barge in)."""
        while self._waiters:
            waiter, connection, task = self._waiters.popleft()
            if not waiter.done():
                self._owner, self._owner_task = connection, task
                waiter.set_result(None)
                return
        self._locked, self._owner, self._owner_task = False, None, None


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (a synchronous caller)
        return None
