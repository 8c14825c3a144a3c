"""Finds jobs whose worker died (no heartbeat for a while) and re-queues or fails them.

It also deletes finished jobs past their retention (``jobs_retention_days``), hourly.

Nothing is silently lost: a job left ``running`` goes back to ``queued`` while it has
attempts left (the lost attempt counts), otherwise it ends ``failed`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.periodic import Periodic
from tradepilot.jobs.service import erased_payload

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs")

WORKER_DIED = "worker died"
PRUNE_EVERY_SECONDS = 3600.0


@dataclass
class ReapResult:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.requeued + self.failed + self.cancelled


async def reap(runtime: Runtime, *, timeout_seconds: float) -> ReapResult:
    """Re-queue or fail every running job silent for more than ``timeout_seconds``."""
    now = runtime.clock.now()
    cutoff = now - timedelta(seconds=timeout_seconds)
    outcome = ReapResult()
    async with runtime.db.transaction() as session:
        stale = (await session.execute(
            select(Job).where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
            .order_by(Job.heartbeat_at).limit(200).with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )).scalars().all()
        for job in stale:
            logger.warning("job's worker died", extra={"job_id": str(job.id), "job_kind": job.kind,
                                                       "worker": job.worker_id, "attempt": job.attempts})
            job.heartbeat_at = job.dispatched_at = None
            if job.cancel_requested:
                job.status, job.finished_at, job.error = JobStatus.CANCELLED, now, WORKER_DIED
                outcome.cancelled += 1
            elif job.attempts < job.max_attempts:
                job.status, job.run_after = JobStatus.QUEUED, now
                job.error = f"{WORKER_DIED} (attempt {job.attempts}); re-queued"
                outcome.requeued += 1
            else:
                job.status, job.finished_at, job.error = JobStatus.FAILED, now, WORKER_DIED
                outcome.failed += 1
            if job.status != JobStatus.QUEUED:
                job.payload = erased_payload(job.kind, job.payload)
                runtime.metrics.jobs.labels(job.kind, job.status).inc()
    return outcome


async def prune_finished(runtime: Runtime, *, older_than_days: int) -> int:
    """Delete final jobs that finished more than ``older_than_days`` ago; returns how many."""
    horizon = runtime.clock.now() - timedelta(days=older_than_days)
    async with runtime.db.transaction() as session:
        result = await session.execute(
            delete(Job).where(Job.status.in_(JobStatus.FINAL), Job.finished_at < horizon)
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class Reaper:
    """Runs ``reap`` periodically in every process that runs jobs (idempotent across them)."""

    def __init__(self, runtime: Runtime, config: JobsConfig, on_requeue: Callable[[], None]) -> None:
        self.runtime = runtime
        self.config = config
        self.on_requeue = on_requeue
        interval = min(max(config.heartbeat_interval_seconds, config.poll_seconds), 15.0)
        self._loop = Periodic("jobs-reaper", self.run_once, interval)
        self._last_prune: float | None = None

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def run_once(self) -> ReapResult:
        outcome = await reap(self.runtime, timeout_seconds=self.config.heartbeat_timeout_seconds)
        if outcome.requeued:
            self.on_requeue()
        mono = self.runtime.clock.monotonic()
        if self._last_prune is None or mono - self._last_prune >= PRUNE_EVERY_SECONDS:
            self._last_prune = mono
            await prune_finished(self.runtime, older_than_days=self.config.retention_days)
        return outcome
