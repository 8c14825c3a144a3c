"""Unhandled errors grouped by fingerprint, persisted so that every replica sees the same groups.

A logging handler on the root logger sees every record logged with a traceback at ERROR or
above (the request middleware's last-resort handler, a failing job, a crashed loop). It only
counts them in memory — a log call must stay cheap and never touch the database — and
``persist`` adds the counts to the ``ops_error_group`` rows (periodically, before a read, at stop).

The fingerprint is the exception's type, the route template and the stack's functions
(module and function name, no line numbers), so the same failure groups across replicas and
small edits, and two different failures on one route do not.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tradepilot.core.clock import Clock
from tradepilot.core.db import Database
from tradepilot.core.logging import ContextFilter, redact
from tradepilot.core.metrics import Metrics
from tradepilot.ops.monitoring.models import ErrorGroup

MAX_TRACE_CHARS = 8000
MAX_MESSAGE_CHARS = 1000


def fingerprint(exc_type: type[BaseException], tb: TracebackType | None, route: str | None) -> str:
    frames = [f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.name}"
              for frame in traceback.extract_tb(tb)]
    key = "\n".join([f"{exc_type.__module__}.{exc_type.__qualname__}", route or "-", *frames])
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class PendingError:
    exception_type: str
    message: str
    route: str | None
    logger: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    sample_trace: str
    last_request_id: str | None


class ErrorTracker(logging.Handler):
    """Counts errors with tracebacks in memory; ``persist`` stores the counts."""

    def __init__(self, db: Database, clock: Clock, metrics: Metrics) -> None:
        super().__init__(logging.ERROR)
        self.addFilter(ContextFilter())
        self.db = db
        self.clock = clock
        self.metrics = metrics
        self._pending: dict[str, PendingError] = {}
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[0] is None:
            return
        try:
            self._count(record)
        except Exception:  # noqa: BLE001 - a log call must never fail the caller
            self.handleError(record)

    def _count(self, record: logging.LogRecord) -> None:
        exc_type, exc, tb = record.exc_info  # type: ignore[misc]
        route = getattr(record, "route", None)
        key = fingerprint(exc_type, tb, route)
        now = self.clock.now()
        trace = redact("".join(traceback.format_exception(exc_type, exc, tb)))[-MAX_TRACE_CHARS:]
        request_id = getattr(record, "request_id", None)
        self.metrics.unhandled_errors.inc()
        with self._guard:
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = PendingError(
                    exception_type=f"{exc_type.__module__}.{exc_type.__qualname__}",
                    message=redact(str(exc))[:MAX_MESSAGE_CHARS], route=route, logger=record.name, count=1,
                    first_seen_at=now, last_seen_at=now, sample_trace=trace, last_request_id=request_id)
            else:
                pending.count += 1
                pending.last_seen_at, pending.sample_trace, pending.last_request_id = now, trace, request_id

    async def persist(self) -> int:
        """Add the counts gathered since the last flush to the shared rows; how many groups."""
        with self._guard:
            pending, self._pending = self._pending, {}
        for key, error in pending.items():
            try:
                await self._store(key, error)
            except Exception:
                with self._guard:  # keep it for the next flush rather than lose it
                    self._merge_back(key, error)
                raise
        return len(pending)

    def _merge_back(self, key: str, error: PendingError) -> None:
        newer = self._pending.get(key)
        if newer is not None:
            error.count += newer.count
            error.last_seen_at, error.sample_trace = newer.last_seen_at, newer.sample_trace
        self._pending[key] = error

    async def _store(self, key: str, error: PendingError) -> None:
        for _ in range(2):  # two replicas may insert one new group at once: the loser adds to it
            async with self.db.transaction() as session:
                updated = await session.execute(
                    update(ErrorGroup).where(ErrorGroup.fingerprint == key)
                    .values(count=ErrorGroup.count + error.count, last_seen_at=error.last_seen_at,
                            sample_trace=error.sample_trace, last_request_id=error.last_request_id)
                    .execution_options(synchronize_session=False))
                if updated.rowcount:  # type: ignore[attr-defined]
                    return
                try:
                    async with session.begin_nested():
                        session.add(ErrorGroup(fingerprint=key, **vars(error)))
                    return
                except IntegrityError:
                    continue


async def error_groups(db: Database, *, limit: int) -> list[ErrorGroup]:
    """Most recently seen first."""
    async with db.session() as session:
        rows = await session.scalars(select(ErrorGroup).order_by(ErrorGroup.last_seen_at.desc()).limit(limit))
        return list(rows)
