"""The job engine on real SQLite and PostgreSQL: run, progress, retry, dead letter, cancel, reap."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tests.integration.jobs_support import (
    RUNS,
    TEST_CONFIG,
    gate,
    jobs_of,
    load_job,
    start_runtime_with_jobs,
    stop_runtime_with_jobs,
    wait_until,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.db import Database
from tradepilot.core.errors import Conflict
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.reaper import prune_finished
from tradepilot.jobs.service import ERASED_PAYLOAD, enqueue
from tradepilot.runtime import Runtime


@pytest.fixture
async def jobs_rt(settings: Settings, clock: TestClock, tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = await start_runtime_with_jobs(settings.model_copy(update={"data_dir": tmp_path}), clock=clock)
    yield runtime
    await stop_runtime_with_jobs(runtime)


async def _enqueue(rt: Runtime, kind: str, payload: dict | None = None, **kw: object) -> uuid.UUID:
    async with rt.db.transaction() as session:
        job = await jobs_of(rt).enqueue(session, kind=kind, payload=payload or {}, **kw)  # type: ignore[arg-type]
    return job.id


async def test_a_job_runs_and_records_its_result(jobs_rt: Runtime, clock: TestClock) -> None:
    job_id = await _enqueue(jobs_rt, "test.echo", {"n": 1})
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"echo": {"n": 1}, "attempt": 1}
    assert job.attempts == 1 and job.progress == 1.0 and job.error is None
    assert job.started_at == job.finished_at == clock.now()
    assert job.worker_id == jobs_of(jobs_rt).worker_id


async def test_the_commit_alone_dispatches_the_job(jobs_rt: Runtime) -> None:
    """No explicit wake or drain: committing the enqueuing transaction is enough."""
    job_id = await _enqueue(jobs_rt, "test.echo", {})

    async def done() -> bool:
        return (await load_job(jobs_rt, job_id)).status == JobStatus.SUCCEEDED

    await wait_until(done, timeout=5)


async def test_a_rolled_back_transaction_leaves_no_job(jobs_rt: Runtime) -> None:
    with pytest.raises(RuntimeError):
        async with jobs_rt.db.transaction() as session:
            await jobs_of(jobs_rt).enqueue(session, kind="test.echo", payload={})
            raise RuntimeError("the caller's change failed")
    await jobs_of(jobs_rt).drain()
    async with jobs_rt.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 0


async def test_progress_is_visible_while_running(jobs_rt: Runtime) -> None:
    name = uuid.uuid4().hex
    job_id = await _enqueue(jobs_rt, "test.progress", {"gate": name})

    async def halfway() -> Job | None:
        job = await load_job(jobs_rt, job_id)
        return job if job.progress == 0.5 else None

    job = await wait_until(halfway)
    assert job.status == JobStatus.RUNNING and job.progress_message == "halfway"
    assert job.heartbeat_at is not None
    gate(name).set()
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0 and job.result == {"done": True}


async def test_a_failing_job_backs_off_then_goes_dead(jobs_rt: Runtime, clock: TestClock) -> None:
    jobs = jobs_of(jobs_rt)
    job_id = await _enqueue(jobs_rt, "test.flaky", {}, max_attempts=3)
    delays = []
    for attempt in (1, 2):
        await jobs.drain()
        job = await load_job(jobs_rt, job_id)
        assert job.status == JobStatus.QUEUED and job.attempts == attempt
        assert job.error is not None and job.error.startswith(f"RuntimeError: boom on attempt {attempt}")
        delay = (job.run_after - clock.now()).total_seconds()
        ceiling = TEST_CONFIG.backoff_base_seconds * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling  # exponential, with jitter
        delays.append(delay)
        # not due yet: nothing runs, however often the dispatcher looks
        await jobs.drain()
        assert (await load_job(jobs_rt, job_id)).attempts == attempt
        clock.advance(delay)
    await jobs.drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.DEAD and job.attempts == 3 and RUNS[str(job_id)] == 3
    assert job.finished_at == clock.now()
    assert "\n" not in job.error and "Traceback" not in job.error  # one line, no stack trace
    assert "secret-token" not in job.error and "[redacted]" in job.error
    assert delays[1] > delays[0] / 2


async def test_a_flaky_job_succeeds_on_a_later_attempt(jobs_rt: Runtime, clock: TestClock) -> None:
    job_id = await _enqueue(jobs_rt, "test.flaky", {"succeed_on": 2}, max_attempts=3)
    await jobs_of(jobs_rt).drain()
    clock.advance(TEST_CONFIG.backoff_base_seconds)
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.result == {"attempt": 2} and job.error is None


async def test_a_permanent_error_skips_the_retries(jobs_rt: Runtime) -> None:
    job_id = await _enqueue(jobs_rt, "test.permanent", {}, max_attempts=5)
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.DEAD and job.attempts == 1 and RUNS[str(job_id)] == 1
    assert job.error == "PermanentJobError: the input can never work"


async def test_a_duplicate_delivery_runs_the_job_once(jobs_rt: Runtime) -> None:
    job_id = await _enqueue(jobs_rt, "test.echo", {})
    transport = jobs_of(jobs_rt).transport
    assert transport is not None
    await asyncio.gather(*(transport.send(str(job_id)) for _ in range(5)))
    await jobs_of(jobs_rt).drain()
    await transport.send(str(job_id))  # and a late one, after it finished
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1 and RUNS[str(job_id)] == 1


async def test_cancel_a_queued_job(jobs_rt: Runtime, clock: TestClock) -> None:
    job_id = await _enqueue(jobs_rt, "test.echo", {}, run_after=clock.now() + timedelta(hours=1))
    async with jobs_rt.db.transaction() as session:
        job = await jobs_of(jobs_rt).get(session, job_id)
        assert job is not None
        job = await jobs_of(jobs_rt).cancel(session, job)
        assert job.status == JobStatus.CANCELLED and job.finished_at == clock.now()
    clock.advance(7200)
    await jobs_of(jobs_rt).drain()
    assert RUNS[str(job_id)] == 0
    async with jobs_rt.db.transaction() as session:
        job = await jobs_of(jobs_rt).get(session, job_id)
        assert job is not None and job.status == JobStatus.CANCELLED
        with pytest.raises(Conflict) as exc:
            await jobs_of(jobs_rt).cancel(session, job)
        assert exc.value.code == "job_finished"


async def test_cancel_a_running_job(jobs_rt: Runtime) -> None:
    job_id = await _enqueue(jobs_rt, "test.loop", {})

    async def started() -> bool:
        return (await load_job(jobs_rt, job_id)).progress > 0

    await wait_until(started)
    async with jobs_rt.db.transaction() as session:
        job = await jobs_of(jobs_rt).get(session, job_id)
        assert job is not None
        job = await jobs_of(jobs_rt).cancel(session, job)
        assert job.status == JobStatus.RUNNING and job.cancel_requested  # asked; it stops itself

    async def cancelled() -> Job | None:
        job = await load_job(jobs_rt, job_id)
        return job if job.status == JobStatus.CANCELLED else None

    job = await wait_until(cancelled, timeout=5)
    assert job.finished_at is not None and job.result is None and job.progress < 1


async def test_the_reaper_requeues_a_job_whose_worker_vanished(jobs_rt: Runtime, clock: TestClock) -> None:
    """A row left ``running`` by a worker that no longer heartbeats (the subprocess test kills one)."""
    job_id = await _enqueue(jobs_rt, "test.echo", {}, max_attempts=2, run_after=clock.now() + timedelta(hours=1))
    async with jobs_rt.db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.RUNNING, attempts=1, worker_id="gone:1:x", heartbeat_at=clock.now(),
            started_at=clock.now(), run_after=clock.now()))
    reaper = jobs_of(jobs_rt).reaper
    assert reaper is not None
    assert (await reaper.run_once()).total == 0  # still within the heartbeat timeout
    clock.advance(TEST_CONFIG.heartbeat_timeout_seconds + 1)
    outcome = await reaper.run_once()
    assert outcome.requeued == 1
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.QUEUED and job.error == "worker died (attempt 1); re-queued"
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2 and job.result == {"echo": {}, "attempt": 2}


async def test_the_reaper_fails_a_job_out_of_attempts(jobs_rt: Runtime, clock: TestClock) -> None:
    job_id = await _enqueue(jobs_rt, "test.echo", {}, max_attempts=1, run_after=clock.now() + timedelta(hours=1))
    async with jobs_rt.db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.RUNNING, attempts=1, worker_id="gone:1:x", heartbeat_at=clock.now()))
    clock.advance(TEST_CONFIG.heartbeat_timeout_seconds + 1)
    reaper = jobs_of(jobs_rt).reaper
    assert reaper is not None
    assert (await reaper.run_once()).failed == 1
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.FAILED and job.error == "worker died" and job.finished_at == clock.now()


async def test_a_reaped_worker_cannot_record_an_outcome(jobs_rt: Runtime, clock: TestClock) -> None:
    """Fencing: the first owner's late success is discarded once the job was re-queued."""
    name = uuid.uuid4().hex
    job_id = await _enqueue(jobs_rt, "test.progress", {"gate": name}, max_attempts=3)

    async def running() -> bool:
        return (await load_job(jobs_rt, job_id)).progress == 0.5

    await wait_until(running)
    async with jobs_rt.db.transaction() as session:  # another process reaped it meanwhile
        await session.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.QUEUED, worker_id=None, run_after=clock.now() + timedelta(hours=1)))
    gate(name).set()
    await jobs_of(jobs_rt).drain()
    job = await load_job(jobs_rt, job_id)
    assert job.status == JobStatus.QUEUED and job.result is None


async def test_sensitive_payloads_are_erased_when_final(jobs_rt: Runtime) -> None:
    jobs = jobs_of(jobs_rt)
    async with jobs_rt.db.transaction() as session:
        job = await jobs.enqueue(session, kind="email.send", payload={
            "to": ["a@example.com"], "template": "x", "subject": "s", "text": "token=abc", "html": "<p>x</p>"})
    await jobs.drain()
    done = await load_job(jobs_rt, job.id)
    assert done.status == JobStatus.SUCCEEDED and done.payload == ERASED_PAYLOAD


async def test_unknown_kinds_and_bad_payloads_are_refused_at_enqueue(jobs_rt: Runtime, clock: TestClock) -> None:
    async with jobs_rt.db.transaction() as session:
        with pytest.raises(ValueError, match="unknown job kind"):
            await enqueue(session, kind="test.typo", payload={}, clock=clock)
        with pytest.raises(TypeError):
            await enqueue(session, kind="test.echo", payload={"when": clock.now()}, clock=clock)


async def test_finished_jobs_are_pruned_after_their_retention(jobs_rt: Runtime, clock: TestClock) -> None:
    done_id = await _enqueue(jobs_rt, "test.echo", {})
    await jobs_of(jobs_rt).drain()
    waiting_id = await _enqueue(jobs_rt, "test.echo", {}, run_after=clock.now() + timedelta(days=60))
    clock.advance(TEST_CONFIG.retention_days * 86400 - 1)
    assert await prune_finished(jobs_rt, older_than_days=TEST_CONFIG.retention_days) == 0
    clock.advance(2)
    assert await prune_finished(jobs_rt, older_than_days=TEST_CONFIG.retention_days) == 1
    async with jobs_rt.db.session() as session:
        assert await session.get(Job, done_id) is None
        assert await session.get(Job, waiting_id) is not None  # never a job that has not run


async def test_shutdown_puts_a_running_job_back_in_the_queue(settings: Settings, clock: TestClock,
                                                            tmp_path: Path) -> None:
    config = replace(TEST_CONFIG, shutdown_grace_seconds=0.1)
    runtime = await start_runtime_with_jobs(settings.model_copy(update={"data_dir": tmp_path}), clock=clock,
                                            config=config)
    try:
        name = uuid.uuid4().hex
        job_id = await _enqueue(runtime, "test.progress", {"gate": name})

        async def running() -> bool:
            return (await load_job(runtime, job_id)).progress == 0.5

        await wait_until(running)
    finally:
        await stop_runtime_with_jobs(runtime)  # the handler never finishes by itself
    # read the row before anything can pick the job up again (a started runtime claims it at once)
    database = Database(settings.database_url)
    try:
        async with database.session() as session:
            job = await session.get(Job, job_id)
    finally:
        await database.dispose()
    assert job is not None
    assert job.status == JobStatus.QUEUED and job.attempts == 0  # the interrupted attempt is not held against it
    assert job.error == "interrupted by shutdown; will run again"
    runtime = await start_runtime_with_jobs(settings.model_copy(update={"data_dir": tmp_path}), clock=clock)
    try:
        gate(name).set()
        await jobs_of(runtime).drain()
        job = await load_job(runtime, job_id)
        assert job.status == JobStatus.SUCCEEDED and job.attempts == 1
    finally:
        await stop_runtime_with_jobs(runtime)


async def test_a_process_with_redis_can_also_run_jobs_itself(settings: Settings, redis_url: str,
                                                            tmp_path: Path) -> None:
    """``jobs_inprocess``: a web process that enqueues over the Redis stream and consumes it too."""
    settings = settings.model_copy(update={"redis_url": redis_url, "data_dir": tmp_path})
    runtime = await start_runtime_with_jobs(settings, execute=True)
    try:
        transport = jobs_of(runtime).transport
        assert transport is not None and not transport.in_memory
        job_ids = [await _enqueue(runtime, "test.echo", {"n": n}) for n in range(3)]
        await transport.send(str(job_ids[0]))  # a duplicate through Redis, too

        async def all_done() -> bool:
            jobs = [await load_job(runtime, job_id) for job_id in job_ids]
            return all(job.status == JobStatus.SUCCEEDED for job in jobs)

        await wait_until(all_done, timeout=20)
        assert [RUNS[str(job_id)] for job_id in job_ids] == [1, 1, 1]
    finally:
        await stop_runtime_with_jobs(runtime)
