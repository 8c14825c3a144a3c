"""Job records, cron schedules and their firings: the database is the record of all work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class JobStatus:
    """Every state a job can be in; the last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # given up without the handler failing (its worker died too often)
    DEAD = "dead"  # the dead-letter state: the handler failed on every attempt
    CANCELLED = "cancelled"

    FINAL = frozenset({SUCCEEDED, FAILED, DEAD, CANCELLED})


class Job(UUIDPrimaryKey, Base):
    """One unit of background work and everything known about its execution."""

    __tablename__ = "job"

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # a fraction 0..1, never money
    progress_message: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    run_after: Mapped[datetime]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]  # last time a dispatcher sent it to the queue
    worker_id: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(default=False)

    @property
    def is_final(self) -> bool:
        return self.status in JobStatus.FINAL


Index("ix_job_user_id", Job.user_id)
Index("ix_job_due", Job.status, Job.run_after)
Index("ix_job_running", Job.status, Job.heartbeat_at)


class Schedule(Base):
    """A cron schedule registered in code, persisted so its next firing survives restarts."""

    __tablename__ = "schedule"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    cron: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_fire_at: Mapped[datetime]
    last_fired_at: Mapped[datetime | None]


class ScheduleFiring(Base):
    """One firing of a schedule; the primary key lets exactly one process record it."""

    __tablename__ = "schedule_firing"

    schedule_name: Mapped[str] = mapped_column(
        ForeignKey("schedule.name", ondelete="CASCADE"), primary_key=True
    )
    fire_at: Mapped[datetime] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
