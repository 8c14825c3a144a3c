"""Runs jobs: claims each delivery atomically, heartbeats, records the outcome, retries.

A delivery carries only a job id. The claim is one conditional UPDATE (``queued`` →
``running``), so a duplicate delivery of the same id finds nothing to claim and is
dropped. Every later write is fenced by (worker id, attempt): a worker whose job was
reaped in the meantime cannot overwrite what the next owner records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from tradepilot.core.context import user_id_var
from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.registry import (
    JobCancelled,
    JobContext,
    JobLost,
    PermanentJobError,
    RetryLater,
    get_handler,
)
from tradepilot.jobs.service import backoff_seconds, erased_payload, safe_error

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.jobs")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Claim:
    job_id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    user_id: uuid.UUID | None


@dataclass
class _Run:
    claim: _Claim
    handler_task: asyncio.Task[Any] | None = None
    interrupted: str | None = None  # "lost" or "shutdown" once we cancel the handler ourselves
    handler_done: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobExecutor:
    """Executes deliveries (job ids) in this process, at most ``concurrency`` at a time."""

    def __init__(self, runtime: Runtime, config: JobsConfig, *, worker_id: str | None = None,
                 on_requeue: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.config = config
        self.worker_id = worker_id or new_worker_id()
        self._on_requeue = on_requeue or (lambda: None)
        self._slots = asyncio.Semaphore(config.concurrency)
        self._runs: dict[uuid.UUID, _Run] = {}
        self._stopping = False

    @property
    def running(self) -> int:
        return len(self._runs)

    async def run(self, job_id: str) -> None:
        """Handle one delivery; never raises (the database records what happened)."""
        try:
            jid = uuid.UUID(str(job_id))
        except ValueError:
            logger.warning("ignored a delivery with a malformed job id")
            return
        async with self._slots:
            if self._stopping:
                await self._undispatch(jid)
                return
            claim = await self._claim(jid)
            if claim is None:
                return  # someone else has it, it was cancelled, or it is not due yet
            if self._stopping:  # stop() began while we were claiming
                await self._release(claim)
                return
            run = _Run(claim)
            self._runs[jid] = run
            token = user_id_var.set(str(claim.user_id) if claim.user_id else None)
            try:
                await self._execute(run)
            except Exception:
                logger.exception("job bookkeeping failed", extra={"job_id": str(jid)})
            finally:
                user_id_var.reset(token)
                self._runs.pop(jid, None)
                run.done.set()

    async def stop(self, grace_seconds: float) -> None:
        """Take no new work; give running jobs ``grace_seconds``, then put them back in the queue."""
        self._stopping = True
        runs = list(self._runs.values())
        if runs:
            waits = [asyncio.create_task(r.done.wait()) for r in runs]
            _, pending = await asyncio.wait(waits, timeout=grace_seconds)
            for task in pending:
                task.cancel()
        runs = list(self._runs.values())
        for run in runs:
            run.interrupted = "shutdown"
            if run.handler_task is not None:
                run.handler_task.cancel()
        for run in runs:
            await run.done.wait()

    # --- claim and execute -------------------------------------------------------------

    async def _claim(self, job_id: uuid.UUID) -> _Claim | None:
        now = self.runtime.clock.now()
        async with self.runtime.db.transaction() as session:
            row = (await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.run_after <= now)
                .values(status=JobStatus.RUNNING, worker_id=self.worker_id, started_at=now,
                        heartbeat_at=now, attempts=Job.attempts + 1, progress=0.0,
                        progress_message=None)
                .returning(Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.user_id)
                .execution_options(synchronize_session=False)
            )).first()
        if row is None:
            return None
        return _Claim(job_id, row.kind, row.payload, row.attempts, row.max_attempts, row.user_id)

    async def _execute(self, run: _Run) -> None:
        claim = run.claim
        spec = get_handler(claim.kind)
        ctx = JobContext(runtime=self.runtime, job_id=claim.job_id, kind=claim.kind, attempt=claim.attempt,
                         max_attempts=claim.max_attempts, user_id=claim.user_id,
                         _report=lambda f, m: self._report(claim, f, m))
        heartbeat = asyncio.create_task(self._heartbeat(run), name=f"job-heartbeat-{claim.job_id}")
        result: Any = None
        error: BaseException | None = None
        try:
            if spec is None:
                raise LookupError(f"no handler for job kind {claim.kind!r} in this process")
            run.handler_task = asyncio.create_task(
                self._call(spec.func, ctx, claim.payload, spec.timeout_seconds), name=f"job-{claim.job_id}"
            )
            result = await run.handler_task
            _check_json(result)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded below
            error = exc
        finally:
            run.handler_done.set()
            await heartbeat
        await self._record(run, result, error)

    async def _record(self, run: _Run, result: Any, error: BaseException | None) -> None:
        claim = run.claim
        if error is None:
            await self._finish(claim, JobStatus.SUCCEEDED, result=result)
        elif isinstance(error, asyncio.CancelledError):
            logger.warning("job interrupted (%s)", run.interrupted or "cancelled", extra=_log_extra(claim))
            if run.interrupted != "lost":
                await asyncio.shield(self._release(claim))
            if run.interrupted is None:
                raise error  # this delivery itself was cancelled from outside
        elif isinstance(error, JobLost):
            logger.warning("job was taken over by another worker", extra=_log_extra(claim))
        elif isinstance(error, JobCancelled):
            await self._finish(claim, JobStatus.CANCELLED)
        elif isinstance(error, RetryLater):
            await self._fail(claim, safe_error(error), permanent=False, delay=error.delay_seconds,
                             counts=error.counts)
        elif isinstance(error, PermanentJobError):
            logger.warning("job failed permanently: %s", safe_error(error), extra=_log_extra(claim))
            await self._fail(claim, safe_error(error), permanent=True)
        elif isinstance(error, Exception):
            logger.warning("job attempt failed", exc_info=error, extra=_log_extra(claim))
            await self._fail(claim, safe_error(error), permanent=False)
        else:
            raise error

    @staticmethod
    async def _call(func: Any, ctx: JobContext, payload: dict[str, Any], timeout: float | None) -> Any:
        if timeout is None:
            return await func(ctx, payload)
        try:
            async with asyncio.timeout(timeout):
                return await func(ctx, payload)
        except TimeoutError:
            raise TimeoutError(f"attempt timed out after {timeout:g} s") from None

    # --- heartbeat and progress ------------------------------------------------------------

    async def _heartbeat(self, run: _Run) -> None:
        """Touch the row every interval until the handler ends; stop the handler if the job was lost."""
        while not run.handler_done.is_set():
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: never loses a cancellation
                async with asyncio.timeout(self.config.heartbeat_interval_seconds):
                    await run.handler_done.wait()
            if run.handler_done.is_set():
                return
            try:
                owned = await self._touch(run.claim, {})
            except Exception:
                logger.warning("job heartbeat failed", exc_info=True, extra=_log_extra(run.claim))
                continue
            if owned is None and run.handler_task is not None and not run.handler_done.is_set():
                run.interrupted = "lost"
                run.handler_task.cancel()
                return

    async def _report(self, claim: _Claim, fraction: float, message: str | None) -> None:
        values: dict[str, Any] = {"progress": fraction}
        if message is not None:
            values["progress_message"] = message[:500]
        # shielded: a handler cancelled mid-write must not leave a transaction half-closed
        # (on SQLite that would hold the write lock the shutdown release needs)
        cancel_requested = await asyncio.shield(self._touch(claim, values))
        if cancel_requested is None:
            raise JobLost(f"job {claim.job_id} is no longer owned by this worker")
        if cancel_requested:
            raise JobCancelled(f"job {claim.job_id} was cancelled")

    async def _touch(self, claim: _Claim, values: dict[str, Any]) -> bool | None:
        """Heartbeat (plus ``values``); returns cancel_requested, or None if we lost the job."""
        async with self.runtime.db.transaction() as session:
            row = (await session.execute(
                update(Job)
                .where(*self._fence(claim))
                .values(heartbeat_at=self.runtime.clock.now(), **values)
                .returning(Job.cancel_requested)
                .execution_options(synchronize_session=False)
            )).first()
        return None if row is None else bool(row.cancel_requested)

    # --- outcomes ------------------------------------------------------------------------

    def _fence(self, claim: _Claim) -> tuple[Any, ...]:
        return (Job.id == claim.job_id, Job.status == JobStatus.RUNNING,
                Job.worker_id == self.worker_id, Job.attempts == claim.attempt)

    async def _locked(self, session: Any, claim: _Claim) -> Job | None:
        stmt = select(Job).where(*self._fence(claim)).with_for_update()
        return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()

    async def _finish(self, claim: _Claim, status: str, *, result: dict[str, Any] | None = None,
                      error: str | None = None) -> None:
        async with self.runtime.db.transaction() as session:
            job = await self._locked(session, claim)
            if job is None:
                logger.warning("job outcome discarded: ownership lost", extra=_log_extra(claim))
                return
            _make_final(job, status, now=self.runtime.clock.now(), result=result, error=error)
        self._count(claim, status)
        logger.info("job %s", status, extra=_log_extra(claim))

    async def _fail(self, claim: _Claim, error: str, *, permanent: bool, delay: float | None = None,
                    counts: bool = True) -> None:
        """Retry after the back-off (or at least ``delay``), or dead-letter; ``counts=False`` gives
        the attempt back (a handler that chose to wait)."""
        now = self.runtime.clock.now()
        async with self.runtime.db.transaction() as session:
            job = await self._locked(session, claim)
            if job is None:
                logger.warning("job failure discarded: ownership lost", extra=_log_extra(claim))
                return
            if not counts:
                job.attempts -= 1
            if job.cancel_requested:
                status = JobStatus.CANCELLED
                _make_final(job, status, now=now, error=error)
            elif permanent or job.attempts >= job.max_attempts:
                status = JobStatus.DEAD
                _make_final(job, status, now=now, error=error)
            else:
                status = JobStatus.QUEUED
                wait = backoff_seconds(job.attempts, base=self.config.backoff_base_seconds,
                                       cap=self.config.backoff_max_seconds) if counts else 0.0
                wait = max(wait, delay or 0.0)
                job.status, job.error, job.run_after = status, error, now + timedelta(seconds=wait)
                job.heartbeat_at = job.dispatched_at = None
        if status == JobStatus.QUEUED:
            self._on_requeue()
        else:
            self._count(claim, status)

    async def _release(self, claim: _Claim) -> None:
        """Put a job interrupted by shutdown back in the queue; the attempt does not count.

        Retried a few times: a release that fails leaves the job ``running`` until the reaper
        notices the dead worker, which delays it by minutes.
        """
        for attempt in range(3):
            try:
                await self._release_once(claim)
                return
            except Exception:
                if attempt == 2:
                    raise
                logger.warning("job release failed; retrying", exc_info=True, extra=_log_extra(claim))
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _release_once(self, claim: _Claim) -> None:
        async with self.runtime.db.transaction() as session:
            job = await self._locked(session, claim)
            if job is None:
                return
            job.status, job.attempts = JobStatus.QUEUED, job.attempts - 1
            job.run_after = self.runtime.clock.now()
            job.error = "interrupted by shutdown; will run again"
            job.heartbeat_at = job.dispatched_at = None

    async def _undispatch(self, job_id: uuid.UUID) -> None:
        """A delivery arrived while stopping: let another process's dispatcher send it again."""
        with contextlib.suppress(Exception):
            async with self.runtime.db.transaction() as session:
                await session.execute(
                    update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                    .values(dispatched_at=None).execution_options(synchronize_session=False)
                )

    def _count(self, claim: _Claim, status: str) -> None:
        self.runtime.metrics.jobs.labels(claim.kind, status).inc()


def _make_final(job: Job, status: str, *, now: Any, result: dict[str, Any] | None = None,
                error: str | None = None) -> None:
    job.status, job.finished_at, job.heartbeat_at = status, now, None
    job.payload = erased_payload(job.kind, job.payload)
    if status == JobStatus.SUCCEEDED:
        job.result, job.progress, job.error = result, 1.0, None
    elif error is not None:
        job.error = error


def _check_json(result: Any) -> None:
    if result is not None and not isinstance(result, dict):
        raise TypeError("a job handler must return a dict or None")
    json.dumps(result)


def _log_extra(claim: _Claim) -> dict[str, Any]:
    return {"job_id": str(claim.job_id), "job_kind": claim.kind, "attempt": claim.attempt}
