"""Availability from heartbeats in the database, so that restarts and outages count.

Each replica writes a heartbeat every ``interval`` seconds (on the runtime clock). A heartbeat
vouches for the next two intervals (one missed beat is tolerated: the loop is late under
load); coming within them, it extends the replica's current segment, else it starts a new one.
A clean stop ends the segment exactly. The platform is up whenever at least one replica's
segment covers the moment; availability over a window is the covered share of the observed
part of it (from the first heartbeat ever, up to now).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from tradepilot import __version__
from tradepilot.core.clock import Clock
from tradepilot.core.db import Database
from tradepilot.ops.monitoring.models import UptimeSegment

VOUCHED_BEATS = 2
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def new_replica_id() -> str:
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """This replica's heartbeats: one segment row per stretch of continuous beats."""

    def __init__(self, db: Database, clock: Clock, *, replica_id: str, interval: float) -> None:
        self.db = db
        self.clock = clock
        self.replica_id = replica_id
        self.interval = interval
        self.started_at = clock.now()
        self._segment: uuid.UUID | None = None
        self._last_beat: datetime | None = None

    @property
    def vouched(self) -> timedelta:
        return timedelta(seconds=self.interval * VOUCHED_BEATS)

    async def beat(self) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            extended = False
            if self._segment is not None and self._last_beat is not None and now - self._last_beat <= self.vouched:
                result = await session.execute(
                    update(UptimeSegment).where(UptimeSegment.id == self._segment)
                    .values(last_beat_at=now).execution_options(synchronize_session=False))
                extended = bool(result.rowcount)  # type: ignore[attr-defined]  # 0: a restore replaced the table
            if not extended:
                row = UptimeSegment(replica_id=self.replica_id, host=socket.gethostname()[:255], pid=os.getpid(),
                                    version=__version__, started_at=now, last_beat_at=now, stopped_at=None)
                session.add(row)
                await session.flush()
                self._segment = row.id
        self._last_beat = now

    async def stop(self) -> None:
        """A clean stop: the segment ends now, not a vouched interval later."""
        if self._segment is None:
            return
        now = self.clock.now()
        async with self.db.transaction() as session:
            await session.execute(update(UptimeSegment).where(UptimeSegment.id == self._segment)
                                  .values(last_beat_at=now, stopped_at=now).execution_options(synchronize_session=False))
        self._segment = None


@dataclass(frozen=True)
class Availability:
    window: str
    observed_seconds: float
    down_seconds: float
    outages: list[tuple[datetime, datetime]]

    @property
    def availability(self) -> float | None:
        if self.observed_seconds <= 0:
            return None
        return 1 - self.down_seconds / self.observed_seconds


def covered(segment: UptimeSegment, vouched: timedelta, now: datetime) -> tuple[datetime, datetime]:
    end = segment.stopped_at if segment.stopped_at is not None else segment.last_beat_at + vouched
    return segment.started_at, min(end, now)


def availability(segments: list[tuple[datetime, datetime]], *, first_seen: datetime | None, now: datetime,
                 window: str) -> Availability:
    """Down time in ``window`` (ending now): the gaps between the merged covered intervals."""
    if first_seen is None:
        return Availability(window, 0.0, 0.0, [])
    start = max(now - WINDOWS[window], first_seen)
    outages: list[tuple[datetime, datetime]] = []
    cursor = start
    for begin, end in sorted(segments):
        if end <= cursor:
            continue
        if begin > cursor:
            outages.append((cursor, min(begin, now)))
        cursor = max(cursor, end)
        if cursor >= now:
            break
    if cursor < now:
        outages.append((cursor, now))
    down = sum((b - a).total_seconds() for a, b in outages if b > a)
    return Availability(window, max((now - start).total_seconds(), 0.0), down, [(a, b) for a, b in outages if b > a])


async def uptime_report(db: Database, *, now: datetime, interval: float) -> list[Availability]:
    vouched = timedelta(seconds=interval * VOUCHED_BEATS)
    horizon = now - max(WINDOWS.values())
    async with db.session() as session:
        first_seen = await session.scalar(select(UptimeSegment.started_at).order_by(UptimeSegment.started_at)
                                          .limit(1))
        rows = (await session.scalars(select(UptimeSegment).where(
            UptimeSegment.last_beat_at >= horizon - vouched))).all()
    spans = [covered(row, vouched, now) for row in rows]
    return [availability(spans, first_seen=first_seen, now=now, window=name) for name in WINDOWS]


async def live_replicas(db: Database, *, now: datetime, interval: float) -> list[UptimeSegment]:
    """Replicas whose last heartbeat still vouches for now and that did not stop."""
    since = now - timedelta(seconds=interval * VOUCHED_BEATS)
    async with db.session() as session:
        rows = await session.scalars(select(UptimeSegment).where(
            UptimeSegment.last_beat_at >= since, UptimeSegment.stopped_at.is_(None))
            .order_by(UptimeSegment.started_at))
        return list(rows)
