"""Jobs across real processes: a worker killed mid-job, and ``tradepilot worker`` over Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.jobs_support import (
    TEST_CONFIG,
    jobs_of,
    load_job,
    settings_env,
    spawn,
    start_runtime_with_jobs,
    stop_runtime_with_jobs,
    wait_until,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.jobs.models import JobStatus
from tradepilot.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # starts Python processes

WORKER = ["-m", "tradepilot", "worker", "--import", "tests.integration.jobs_support"]


async def _wait_for_line(log: Path, text: str, proc, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"process exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in time: {log.read_text()[-3000:]}"
        await asyncio.sleep(0.05)


async def _enqueue(runtime: Runtime, kind: str, *, max_attempts: int) -> uuid.UUID:
    async with runtime.db.transaction() as session:
        job = await jobs_of(runtime).enqueue(session, kind=kind, payload={}, max_attempts=max_attempts)
    return job.id


@pytest.mark.parametrize("max_attempts", [2, 1], ids=["attempts-left", "out-of-attempts"])
async def test_a_job_left_running_by_a_killed_worker_is_never_lost(
    settings: Settings, tmp_path: Path, max_attempts: int
) -> None:
    settings = settings.model_copy(update={"data_dir": tmp_path})
    recorder = await start_runtime_with_jobs(settings, execute=False)  # records jobs, runs none
    log = tmp_path / "worker.log"
    proc = spawn(WORKER, settings_env(settings), log)
    runner: Runtime | None = None
    try:
        job_id = await _enqueue(recorder, "test.sleepy", max_attempts=max_attempts)

        async def running_in_child() -> bool:
            assert proc.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
            job = await load_job(recorder, job_id)
            return job.status == JobStatus.RUNNING and job.progress > 0

        try:
            await wait_until(running_in_child, timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log: {log.read_text()[-3000:]}") from None
        assert f":{proc.pid}:" in str((await load_job(recorder, job_id)).worker_id)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        assert (await load_job(recorder, job_id)).status == JobStatus.RUNNING  # nobody knows yet

        # Another process that runs jobs, once the heartbeat timeout has passed.
        later = datetime.now(UTC) + timedelta(seconds=TEST_CONFIG.heartbeat_timeout_seconds + 5)
        runner = await start_runtime_with_jobs(settings, clock=TestClock(later))
        reaper = jobs_of(runner).reaper
        assert reaper is not None
        await reaper.run_once()
        await jobs_of(runner).drain()
        job = await load_job(runner, job_id)
        if max_attempts == 2:
            assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
            assert job.result == {"recovered_on_attempt": 2, "pid": os.getpid()}
        else:
            assert job.status == JobStatus.FAILED and job.attempts == 1
            assert job.error == "worker died" and job.finished_at == later
    finally:
        if proc.poll() is None:
            proc.kill()
        if runner is not None:
            await stop_runtime_with_jobs(runner)
        await stop_runtime_with_jobs(recorder)


async def test_a_worker_process_runs_jobs_enqueued_by_another_over_redis(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"redis_url": redis_url, "data_dir": tmp_path})
    web = await start_runtime_with_jobs(settings)  # with Redis, a web process only enqueues by default
    assert not jobs_of(web).executes
    log = tmp_path / "worker.log"
    proc = None
    try:
        async with web.db.transaction() as session:  # sent before any worker exists: Redis keeps it
            early = await web.services["email"].send(session, to="ada@example.com", template="welcome", context={})
        proc = spawn(["-m", "tradepilot", "worker"], settings_env(settings), log)
        await _wait_for_line(log, "worker ready", proc)
        async with web.db.transaction() as session:
            late = await web.services["email"].send(session, to="bob@example.com", template="welcome", context={})

        async def both_done() -> bool:
            jobs = [await load_job(web, early.id), await load_job(web, late.id)]
            return all(j.status == JobStatus.SUCCEEDED for j in jobs)

        try:
            await wait_until(both_done, timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; worker log: {log.read_text()[-3000:]}") from None
        for job_id in (early.id, late.id):
            job = await load_job(web, job_id)
            assert f":{proc.pid}:" in str(job.worker_id) and job.attempts == 1
            assert (tmp_path / "mail-outbox" / f"{job_id}.eml").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0  # a clean, graceful stop
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await stop_runtime_with_jobs(web)
