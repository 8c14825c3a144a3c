"""Cron-style schedules that enqueue jobs, firing once across all replicas.

Schedules are declared in code (``schedule("reports.daily", "0 6 * * *", "reports.daily")``)
and persisted in ``schedule`` so their next firing survives restarts. Cron expressions are
evaluated in UTC. Every process that runs jobs also runs a scheduler; a firing is recorded
in ``schedule_firing`` whose primary key (schedule, fire time) admits one row, and the
process whose INSERT wins enqueues the job in that same transaction. Firings missed while
every process was down are coalesced into one firing (the latest due one), not replayed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Schedule, ScheduleFiring
from tradepilot.jobs.periodic import Periodic
from tradepilot.jobs.service import enqueue

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs.scheduler")

PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 3


_SCHEDULES: dict[str, ScheduleSpec] = {}


def schedule(name: str, cron: str, kind: str, payload: dict[str, Any] | None = None, *,
             max_attempts: int = 3) -> ScheduleSpec:
    """Declare a schedule: at each ``cron`` time (UTC), enqueue a job of ``kind`` with ``payload``."""
    if not croniter.is_valid(cron):
        raise ValueError(f"schedule {name!r}: invalid cron expression {cron!r}")
    spec = ScheduleSpec(name, cron, kind, dict(payload or {}), max_attempts)
    existing = _SCHEDULES.get(name)
    if existing is not None and existing != spec:
        raise ValueError(f"schedule {name!r} is already declared differently")
    _SCHEDULES[name] = spec
    return spec


def registered_schedules() -> list[ScheduleSpec]:
    return list(_SCHEDULES.values())


def next_fire_after(cron: str, moment: datetime) -> datetime:
    """The first firing strictly after ``moment``."""
    return croniter(cron, moment).get_next(datetime)  # type: ignore[no-any-return]


def latest_fire_at_or_before(cron: str, moment: datetime) -> datetime:
    """The last firing at or before ``moment`` (the one that coalesces any missed before it)."""
    return croniter(cron, moment + timedelta(microseconds=1)).get_prev(datetime)  # type: ignore[no-any-return]


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


class Scheduler:
    def __init__(self, runtime: Runtime, config: JobsConfig, *, specs: Iterable[ScheduleSpec] | None = None,
                 on_fired: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.config = config
        self._specs = {s.name: s for s in (registered_schedules() if specs is None else specs)}
        self._on_fired = on_fired or (lambda: None)
        self._loop = Periodic("jobs-scheduler", self.tick, config.poll_seconds)
        self._last_prune: float | None = None

    async def start(self) -> None:
        await self.sync()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def sync(self) -> None:
        """Create missing schedule rows and bring changed ones up to date with the code."""
        now = self.runtime.clock.now()
        for spec in self._specs.values():
            async with self.runtime.db.transaction() as session:
                await session.execute(_insert(session, Schedule).values(
                    name=spec.name, cron=spec.cron, kind=spec.kind, payload=spec.payload, enabled=True,
                    next_fire_at=next_fire_after(spec.cron, now),
                ).on_conflict_do_nothing(index_elements=["name"]))
                row = await session.get(Schedule, spec.name, populate_existing=True)
                assert row is not None
                if row.cron != spec.cron:
                    row.cron, row.next_fire_at = spec.cron, next_fire_after(spec.cron, now)
                if row.kind != spec.kind or row.payload != spec.payload:
                    row.kind, row.payload = spec.kind, spec.payload

    async def tick(self) -> list[uuid.UUID]:
        """Fire every due schedule; returns the ids of the jobs this process enqueued."""
        now = self.runtime.clock.now()
        if not self._specs:
            return []
        async with self.runtime.db.session() as session:
            due = (await session.execute(
                select(Schedule.name).where(Schedule.name.in_(self._specs), Schedule.enabled.is_(True),
                                            Schedule.next_fire_at <= now)
            )).scalars().all()
        fired = []
        for name in due:
            job_id = await self._fire(name, now)
            if job_id is not None:
                fired.append(job_id)
        if fired:
            self._on_fired()
        await self._maybe_prune(now)
        return fired

    async def _fire(self, name: str, now: datetime) -> uuid.UUID | None:
        spec = self._specs[name]
        async with self.runtime.db.transaction() as session:
            row = await session.get(Schedule, name, populate_existing=True)
            if row is None or not row.enabled or row.next_fire_at > now:
                return None  # another process fired it since we looked
            fire_at = max(latest_fire_at_or_before(row.cron, now), row.next_fire_at)
            won = (await session.execute(
                _insert(session, ScheduleFiring)
                .values(schedule_name=name, fire_at=fire_at, created_at=now)
                .on_conflict_do_nothing(index_elements=["schedule_name", "fire_at"])
                .returning(ScheduleFiring.fire_at)
            )).first()
            row.next_fire_at = next_fire_after(row.cron, fire_at)
            if won is None:
                logger.info("schedule %s at %s was fired by another process", name, fire_at.isoformat())
                return None
            row.last_fired_at = fire_at
            job = await enqueue(session, kind=row.kind, payload=row.payload, max_attempts=spec.max_attempts,
                                clock=self.runtime.clock)
            firing = await session.get(ScheduleFiring, (name, fire_at))
            if firing is not None:
                firing.job_id = job.id
        logger.info("schedule %s fired for %s", name, fire_at.isoformat(), extra={"job_id": str(job.id)})
        return job.id

    async def _maybe_prune(self, now: datetime) -> None:
        mono = self.runtime.clock.monotonic()
        if self._last_prune is not None and mono - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = mono
        horizon = now - timedelta(days=self.config.schedule_retention_days)
        async with self.runtime.db.transaction() as session:
            await session.execute(delete(ScheduleFiring).where(ScheduleFiring.fire_at < horizon))
