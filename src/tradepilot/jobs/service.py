"""Job use cases: enqueue in the caller's transaction, look up, cancel; retry arithmetic."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.clock import Clock
from tradepilot.core.errors import Conflict
from tradepilot.core.logging import redact
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.registry import get_handler

MAX_ERROR_CHARS = 500
ERASED_PAYLOAD: dict[str, Any] = {"erased": True}


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    user_id: uuid.UUID | None = None,
    max_attempts: int = 5,
    run_after: datetime | None = None,
    clock: Clock,
) -> Job:
    """Add a job in the caller's transaction: it exists exactly when the caller's change does."""
    if get_handler(kind) is None:
        raise ValueError(f"unknown job kind {kind!r}: register it with @job_handler")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    json.dumps(payload)  # refuse what the JSON column could not store, here and not at commit
    now = clock.now()
    job = Job(
        id=uuid.uuid4(), user_id=user_id, kind=kind, payload=payload, status=JobStatus.QUEUED,
        progress=0.0, attempts=0, max_attempts=max_attempts, run_after=run_after or now,
        created_at=now, cancel_requested=False,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(session: AsyncSession, *, job_id: uuid.UUID) -> Job | None:
    """The job with this id, or None."""
    return await session.get(Job, job_id, populate_existing=True)


def erased_payload(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a final job keeps of its payload: nothing, if its kind says the payload is sensitive."""
    spec = get_handler(kind)
    return ERASED_PAYLOAD if spec is not None and spec.sensitive_payload else payload


async def cancel_job(session: AsyncSession, *, job: Job, clock: Clock) -> Job:
    """Cancel a queued job at once, or ask a running one to stop; a final job is a conflict."""
    for _ in range(5):  # a running job may be re-queued between the two updates: try again
        now = clock.now()
        cancelled = await session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=now, dispatched_at=None,
                    payload=erased_payload(job.kind, job.payload))
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        if cancelled.first() is None:
            requested = await session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == JobStatus.RUNNING)
                .values(cancel_requested=True)
                .returning(Job.id)
                .execution_options(synchronize_session=False)
            )
            if requested.first() is None:
                await session.refresh(job)
                if job.is_final:
                    raise Conflict("The job has already finished.", code="job_finished")
                continue
        await session.refresh(job)
        return job
    raise Conflict("The job is changing state; try again.", code="job_busy")


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, with jitter.

    The delay is drawn from [ceiling/2, ceiling] where ceiling = min(cap, base * 2**(attempt-1)),
    so retries of many jobs that failed together spread out instead of stampeding.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    draw = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2


def safe_error(exc: BaseException) -> str:
    """One line for the job's ``error``: the exception's type and message, redacted, no trace."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = str(redact(line))
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"
