"""The cron scheduler on real SQLite and PostgreSQL: persistence, coalescing, once across processes."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.integration.jobs_support import (
    TEST_CONFIG,
    jobs_of,
    jobs_of_kind,
    spawn,
    start_runtime_with_jobs,
    stop_runtime_with_jobs,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.jobs import scheduler as scheduler_module
from tradepilot.jobs.models import JobStatus, Schedule, ScheduleFiring
from tradepilot.jobs.scheduler import (
    Scheduler,
    ScheduleSpec,
    latest_fire_at_or_before,
    next_fire_after,
    registered_schedules,
    schedule,
)
from tradepilot.runtime import Runtime, build_runtime

T0 = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
EVERY_MINUTE = ScheduleSpec("test.minutely", "* * * * *", "test.echo", {"report": "minutely"}, max_attempts=2)


async def _scheduler(settings: Settings, clock: TestClock, spec: ScheduleSpec = EVERY_MINUTE) -> tuple[Runtime, Scheduler]:
    runtime = build_runtime(settings, clock=clock)
    scheduler = Scheduler(runtime, TEST_CONFIG, specs=[spec])
    await scheduler.sync()
    return runtime, scheduler


async def _schedule_row(runtime: Runtime, name: str) -> Schedule:
    async with runtime.db.session() as session:
        row = await session.get(Schedule, name)
        assert row is not None
        return row


async def _count(runtime: Runtime, model: type) -> int:
    async with runtime.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def test_cron_helpers() -> None:
    assert next_fire_after("*/5 * * * *", datetime(2026, 1, 1, 0, 5, tzinfo=UTC)) == \
        datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert latest_fire_at_or_before("*/5 * * * *", datetime(2026, 1, 1, 0, 5, tzinfo=UTC)) == \
        datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert latest_fire_at_or_before("*/5 * * * *", datetime(2026, 1, 1, 0, 9, 59, tzinfo=UTC)) == \
        datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="invalid cron"):
        schedule("test.bad", "61 * * * *", "test.echo")
    try:
        spec = schedule("test.declared", "0 6 * * *", "test.echo")
        assert schedule("test.declared", "0 6 * * *", "test.echo") == spec  # the same twice is fine
        assert spec in registered_schedules()
        with pytest.raises(ValueError, match="already declared"):
            schedule("test.declared", "0 7 * * *", "test.echo")
    finally:
        scheduler_module._SCHEDULES.pop("test.declared", None)  # keep the process-wide registry clean


async def test_a_schedule_fires_at_its_cron_time(settings: Settings) -> None:
    clock = TestClock(T0)
    runtime, scheduler = await _scheduler(settings, clock)
    try:
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.next_fire_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC) and row.last_fired_at is None
        assert await scheduler.tick() == []
        clock.advance(30)
        fired = await scheduler.tick()
        assert len(fired) == 1
        assert await scheduler.tick() == []  # the same minute fires once
        [job] = await jobs_of_kind(runtime, "test.echo")
        assert job.id == fired[0] and job.payload == {"report": "minutely"} and job.max_attempts == 2
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.last_fired_at == clock.now() and row.next_fire_at == clock.now() + timedelta(minutes=1)
        async with runtime.db.session() as session:
            firing = await session.get(ScheduleFiring, (EVERY_MINUTE.name, clock.now()))
            assert firing is not None and firing.job_id == job.id
    finally:
        await runtime.db.dispose()


async def test_schedules_survive_a_restart_and_missed_firings_coalesce(settings: Settings) -> None:
    clock = TestClock(T0)
    runtime, scheduler = await _scheduler(settings, clock)
    clock.advance(30)
    assert len(await scheduler.tick()) == 1
    await runtime.db.dispose()

    clock.advance(10 * 60 + 15)  # everything was down for ten minutes: 00:01 -> 00:11:15
    runtime, scheduler = await _scheduler(settings, clock)  # a fresh process, same database
    try:
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.next_fire_at == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)  # kept, not reset
        assert len(await scheduler.tick()) == 1  # ten missed firings become one
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.last_fired_at == datetime(2026, 1, 1, 0, 11, tzinfo=UTC)
        assert row.next_fire_at == datetime(2026, 1, 1, 0, 12, tzinfo=UTC)
        assert len(await jobs_of_kind(runtime, "test.echo")) == 2
    finally:
        await runtime.db.dispose()


async def test_a_firing_recorded_elsewhere_is_not_fired_again(settings: Settings) -> None:
    """The unique (schedule, fire time) row decides: losing the INSERT means no job."""
    clock = TestClock(T0)
    runtime, scheduler = await _scheduler(settings, clock)
    try:
        clock.advance(30)
        async with runtime.db.transaction() as session:  # another replica won this firing
            session.add(ScheduleFiring(schedule_name=EVERY_MINUTE.name, fire_at=clock.now(), created_at=clock.now()))
        assert await scheduler.tick() == []
        assert await jobs_of_kind(runtime, "test.echo") == []
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.next_fire_at == clock.now() + timedelta(minutes=1)
    finally:
        await runtime.db.dispose()


async def test_changed_cron_and_disabled_schedules(settings: Settings) -> None:
    clock = TestClock(T0)
    runtime, _ = await _scheduler(settings, clock)
    await runtime.db.dispose()
    hourly = ScheduleSpec(EVERY_MINUTE.name, "0 * * * *", "test.echo", {"report": "hourly"})
    runtime, scheduler = await _scheduler(settings, clock, hourly)
    try:
        row = await _schedule_row(runtime, hourly.name)
        assert row.cron == "0 * * * *" and row.payload == {"report": "hourly"}
        assert row.next_fire_at == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
        async with runtime.db.transaction() as session:
            (await session.get(Schedule, hourly.name)).enabled = False  # type: ignore[union-attr]
        clock.advance(3600)
        assert await scheduler.tick() == []
    finally:
        await runtime.db.dispose()


async def test_a_scheduled_job_runs(settings: Settings, tmp_path: Path) -> None:
    clock = TestClock(T0)
    runtime = await start_runtime_with_jobs(settings.model_copy(update={"data_dir": tmp_path}), clock=clock)
    try:
        scheduler = Scheduler(runtime, TEST_CONFIG, specs=[EVERY_MINUTE], on_fired=jobs_of(runtime).wake)
        await scheduler.sync()
        clock.advance(30)
        [job_id] = await scheduler.tick()
        await jobs_of(runtime).drain()
        [job] = await jobs_of_kind(runtime, "test.echo")
        assert job.id == job_id and job.status == JobStatus.SUCCEEDED
        assert job.result == {"echo": {"report": "minutely"}, "attempt": 1}
    finally:
        await stop_runtime_with_jobs(runtime)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_firing_runs_once_with_two_processes(settings: Settings, tmp_path: Path) -> None:
    fire_at = T0 + timedelta(seconds=30)
    runtime, _ = await _scheduler(settings, TestClock(T0))  # next firing: fire_at
    try:
        go = tmp_path / "go"
        logs = [tmp_path / f"fire-{i}.log" for i in range(2)]
        procs = [
            spawn(["-m", "tests.integration.jobs_support", "fire", settings.database_url, fire_at.isoformat(),
                   str(go), json.dumps(asdict(EVERY_MINUTE))], {}, log)
            for log in logs
        ]
        deadline = time.monotonic() + 60
        while not all("ready" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [log.read_text() for log in logs]
            await asyncio.sleep(0.02)
        go.touch()  # both are connected and polling: they tick at the same instant
        for proc in procs:
            await asyncio.to_thread(proc.wait, 60)
        outputs = [log.read_text() for log in logs]
        assert all(p.returncode == 0 for p in procs), outputs
        fired = sorted(int(out.rsplit("fired ", 1)[1].split()[0]) for out in outputs)
        assert fired == [0, 1], outputs
        jobs = await jobs_of_kind(runtime, "test.echo")
        assert len(jobs) == 1
        assert await _count(runtime, ScheduleFiring) == 1
        row = await _schedule_row(runtime, EVERY_MINUTE.name)
        assert row.last_fired_at == fire_at and row.next_fire_at == fire_at + timedelta(minutes=1)
    finally:
        await runtime.db.dispose()
