"""Test job handlers, a runtime fixture with the job system, and subprocess entry points.

Importing this module registers the ``test.*`` job kinds; worker subprocesses import it
with ``python -m tradepilot worker --import tests.integration.jobs_support``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tradepilot.config import Settings
from tradepilot.core.clock import Clock, TestClock
from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Job
from tradepilot.jobs.registry import JobContext, PermanentJobError, job_handler
from tradepilot.jobs.setup import JobsService, start_jobs, stop_jobs
from tradepilot.runtime import Runtime, build_runtime

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS: Counter[str] = Counter()  # job id -> how many times a handler body started
_GATES: dict[str, asyncio.Event] = {}

TEST_CONFIG = JobsConfig(poll_seconds=0.05, concurrency=4, backoff_base_seconds=2.0, backoff_max_seconds=60.0,
                         heartbeat_timeout_seconds=60.0, redispatch_seconds=300.0, shutdown_grace_seconds=2.0)


def gate(name: str) -> asyncio.Event:
    return _GATES.setdefault(name, asyncio.Event())


@job_handler("test.echo")
async def _echo(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    RUNS[str(ctx.job_id)] += 1
    await asyncio.sleep(0.05)  # long enough for a duplicate delivery to overlap
    return {"echo": payload, "attempt": ctx.attempt}


@job_handler("test.progress")
async def _progress(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.progress(0.5, "halfway")
    await gate(payload["gate"]).wait()
    return {"done": True}


@job_handler("test.flaky")
async def _flaky(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    RUNS[str(ctx.job_id)] += 1
    if ctx.attempt < payload.get("succeed_on", 10**6):
        raise RuntimeError(f"boom on attempt {ctx.attempt} Bearer abc.secret-token\nsecond line")
    return {"attempt": ctx.attempt}


@job_handler("test.permanent")
async def _permanent(ctx: JobContext, payload: dict[str, Any]) -> None:
    RUNS[str(ctx.job_id)] += 1
    raise PermanentJobError("the input can never work")


@job_handler("test.loop")
async def _loop(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    for step in range(10_000):
        await ctx.progress(step / 10_000, f"step {step}")
        await asyncio.sleep(0.01)
    return {"finished": True}


@job_handler("test.sleepy")
async def _sleepy(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Reports progress, then hangs on its first attempt (to be killed); later ones succeed."""
    await ctx.progress(0.1, f"started by pid {os.getpid()}")
    if ctx.attempt == 1:
        await asyncio.sleep(3600)
    return {"recovered_on_attempt": ctx.attempt, "pid": os.getpid()}


async def start_runtime_with_jobs(settings: Settings, *, clock: Clock | None = None, execute: bool | None = None,
                                  config: JobsConfig = TEST_CONFIG) -> Runtime:
    runtime = build_runtime(settings, clock=clock)
    await runtime.bus.start()
    await start_jobs(runtime, execute=execute, config=config, schedules=[])
    return runtime


async def stop_runtime_with_jobs(runtime: Runtime) -> None:
    """Stop, and delete this test's Redis keys (its stream) once nothing listens to them."""
    await stop_jobs(runtime)
    await runtime.bus.stop()
    if runtime.redis is not None:
        keys = [key async for key in runtime.redis.scan_iter(match=runtime.settings.redis_prefix + "*")]
        if keys:
            await runtime.redis.delete(*keys)
        await runtime.redis.aclose()
    await runtime.db.dispose()


def jobs_of(runtime: Runtime) -> JobsService:
    return runtime.services["jobs"]  # type: ignore[no-any-return]


async def load_job(runtime: Runtime, job_id: uuid.UUID) -> Job:
    async with runtime.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def jobs_of_kind(runtime: Runtime, kind: str) -> list[Job]:
    async with runtime.db.session() as session:
        return list((await session.execute(select(Job).where(Job.kind == kind))).scalars())


async def wait_until(probe: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll an async probe until it returns something truthy (for work done by other tasks)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` from the repository root with a clean TRADEPILOT_ environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
    full_env.update(env)
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=full_env, stdout=handle,
                            stderr=subprocess.STDOUT)


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "TRADEPILOT_ENV": "test",
        "TRADEPILOT_DATABASE_URL": settings.database_url,
        "TRADEPILOT_SECRET_KEY": settings.secret_key.get_secret_value(),
        "TRADEPILOT_REDIS_PREFIX": settings.redis_prefix,
        "TRADEPILOT_DATA_DIR": str(settings.data_dir),
        "TRADEPILOT_LOG_JSON": "false",
        "TRADEPILOT_JOBS_POLL_SECONDS": "0.05",
    }
    if settings.redis_url:
        env["TRADEPILOT_REDIS_URL"] = settings.redis_url
    return env


# --- subprocess entry point: one scheduler tick racing another process ----------------------

async def _fire(database_url: str, fire_at: str, go_file: str, schedule_json: str) -> None:
    """Wait for the go signal (so that two processes tick at the same instant), then tick."""
    import json

    from tests.support import make_settings
    from tradepilot.jobs.scheduler import Scheduler, ScheduleSpec

    spec = ScheduleSpec(**json.loads(schedule_json))
    clock = TestClock(datetime.fromisoformat(fire_at))
    clock.advance(1)
    runtime = build_runtime(make_settings(database_url), clock=clock)
    scheduler = Scheduler(runtime, TEST_CONFIG, specs=[spec])
    try:
        await runtime.db.ping()
        print("ready", flush=True)
        while not os.path.exists(go_file):
            await asyncio.sleep(0.001)
        fired = []
        for _ in range(3):
            fired += await scheduler.tick()
        print(f"fired {len(fired)}", flush=True)
    finally:
        await runtime.db.dispose()


if __name__ == "__main__":
    if sys.argv[1] == "fire":
        asyncio.run(_fire(*sys.argv[2:6]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
