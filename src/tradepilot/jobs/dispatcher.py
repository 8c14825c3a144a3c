"""Sends due queued jobs to the transport: the outbox relay of the job table.

A job is marked ``dispatched_at`` in one conditional UPDATE before it is sent, so several
dispatchers (one per process) never send the same job twice in a round. A job sent but
not started within ``redispatch_seconds`` (its delivery was lost, its process died) is
sent again; duplicates are harmless because the claim runs a job once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.periodic import Periodic

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs")

BATCH = 100


class Dispatcher:
    def __init__(self, runtime: Runtime, config: JobsConfig, send: Callable[[str], Awaitable[None]], *,
                 poll: bool) -> None:
        self.runtime = runtime
        self.config = config
        self.send = send
        self.poll = poll  # False: dispatch only when woken (a process that only enqueues)
        self._loop = Periodic("jobs-dispatcher", self.dispatch_due, config.poll_seconds if poll else None)
        self._lock = asyncio.Lock()

    def wake(self) -> None:
        """Dispatch soon (called after a transaction that enqueued a job commits)."""
        self._loop.wake()

    async def start(self) -> None:
        self._loop.start()
        self.wake()

    async def stop(self) -> None:
        await self._loop.stop()

    async def dispatch_due(self) -> int:
        """Send every due job not already on its way; returns how many were sent."""
        sent = 0
        async with self._lock:
            while True:
                ids = await self._mark_batch()
                for index, job_id in enumerate(ids):
                    try:
                        await self.send(str(job_id))
                    except Exception:
                        await self._unmark(ids[index:])
                        raise
                sent += len(ids)
                if len(ids) < BATCH:
                    return sent

    async def _mark_batch(self) -> list[uuid.UUID]:
        now = self.runtime.clock.now()
        cutoff = now - timedelta(seconds=self.config.redispatch_seconds)
        sendable = (Job.status == JobStatus.QUEUED, Job.run_after <= now,
                    or_(Job.dispatched_at.is_(None), Job.dispatched_at < cutoff))
        due = (select(Job.id).where(*sendable).order_by(Job.run_after).limit(BATCH)
               .with_for_update(skip_locked=True))
        async with self.runtime.db.transaction() as session:
            result = await session.execute(
                update(Job).where(Job.id.in_(due.scalar_subquery()), *sendable)
                .values(dispatched_at=now).returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            return list(result.scalars().all())

    async def _unmark(self, ids: list[uuid.UUID]) -> None:
        """A send failed: let the next round (here or elsewhere) try these again."""
        with contextlib.suppress(Exception):
            async with self.runtime.db.transaction() as session:
                await session.execute(
                    update(Job).where(Job.id.in_(ids), Job.status == JobStatus.QUEUED)
                    .values(dispatched_at=None).execution_options(synchronize_session=False)
                )
