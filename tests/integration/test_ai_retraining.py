"""The daily retraining of the direction models (schedule ``ai.train_direction.daily``, 02:41
UTC) on a test clock, the scheduler ticked by hand: it retrains on the history as it is at
each firing, and ``TRADEPILOT_AI_DIRECTION_RETRAIN_ENABLED=false`` leaves the models alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.integration.jobs_support import jobs_of_kind
from tests.integration.strategies_support import import_btc_1h
from tradepilot.ai.direction_job import DAILY_SCHEDULE, TRAIN_JOB
from tradepilot.ai.direction_registry import direction_registry
from tradepilot.app import create_app
from tradepilot.core.clock import TestClock
from tradepilot.jobs.models import Job
from tradepilot.jobs.scheduler import registered_schedules
from tradepilot.market.importer import import_file
from tradepilot.runtime import Runtime

LONGER = Path(__file__).parents[1] / "data" / "market" / "coinbase_btc_usd_1h" / "BTC_USD-1h-first3000.csv"


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2026, 3, 4, 2, 40, 30, tzinfo=UTC))  # half a minute before the firing


async def _runtime(database_url: str, tmp_path: Path, clock: TestClock, enabled: bool) -> AsyncIterator[Runtime]:
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", ai_direction_retrain_enabled=enabled,
                                     ai_direction_symbols=["BTC/USDT"], ai_direction_timeframes=["1h"],
                                     ai_direction_horizons=[1])
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        runtime: Runtime = application.state.runtime
        await runtime.services["jobs"].scheduler.stop()  # ticked by hand, when the test has moved the clock
        yield runtime


@pytest.fixture
async def retraining(database_url: str, tmp_path: Path, clock: TestClock) -> AsyncIterator[Runtime]:
    async for runtime in _runtime(database_url, tmp_path, clock, enabled=True):
        yield runtime


@pytest.fixture
async def switched_off(database_url: str, tmp_path: Path, clock: TestClock) -> AsyncIterator[Runtime]:
    async for runtime in _runtime(database_url, tmp_path, clock, enabled=False):
        yield runtime


async def _fire(runtime: Runtime, seconds: float) -> Job | None:
    """Move the clock, tick the scheduler, run what it enqueued; the training job it fired, if any."""
    jobs = runtime.services["jobs"]
    runtime.clock.advance(seconds)  # type: ignore[attr-defined]
    fired = set(await jobs.scheduler.tick())
    await jobs.drain(timeout=120)
    trainings = [j for j in await jobs_of_kind(runtime, TRAIN_JOB) if j.id in fired]
    assert len(trainings) <= 1
    return trainings[0] if trainings else None


def _model_meta(runtime: Runtime) -> dict[str, Any] | None:
    registry = direction_registry(runtime)
    model = registry.load(registry.key(runtime.services["market"].venue, "BTC/USDT", "1h", 1))
    return None if model is None else model.meta


async def test_the_models_are_retrained_every_day_at_02_41_on_the_history_then(retraining: Runtime) -> None:
    assert DAILY_SCHEDULE in registered_schedules() and DAILY_SCHEDULE.cron == "41 2 * * *"
    await import_btc_1h(retraining)  # 720 hourly bars
    assert await _fire(retraining, 20) is None  # 02:40:50: not yet
    job = await _fire(retraining, 10)  # 02:41:00
    assert job is not None and job.payload == {"reason": "scheduled"} and job.status == "succeeded"
    (trained,) = job.result["trained"]
    assert (trained["symbol"], trained["timeframe"], trained["horizon"], trained["bars"]) == ("BTC/USDT", "1h", 1, 720)
    first = _model_meta(retraining)
    assert first is not None and first["bars"] == 720 and first["trained_at"].startswith("2026-03-04T02:41")

    assert await _fire(retraining, 3600) is None  # once a day
    await asyncio.to_thread(import_file, retraining.services["market"].candles, LONGER, symbol="BTC/USDT",
                            timeframe="1h", derive=False)  # the history grew meanwhile
    again = await _fire(retraining, 23 * 3600)  # 02:41 the next day
    assert again is not None and again.id != job.id and again.status == "succeeded"
    assert again.result["trained"][0]["bars"] == 3000
    second = _model_meta(retraining)
    assert second is not None and second["bars"] == 3000 and second["trained_at"].startswith("2026-03-05T02:41")
    assert second["window"]["last_bar"] > first["window"]["last_bar"]


async def test_switched_off_the_daily_firing_trains_nothing(switched_off: Runtime) -> None:
    await import_btc_1h(switched_off)
    job = await _fire(switched_off, 30)
    assert job is not None and job.status == "succeeded"  # the schedule still fires once across replicas ...
    assert job.result == {"skipped": "TRADEPILOT_AI_DIRECTION_RETRAIN_ENABLED is false"}  # ... and the job declines
    assert _model_meta(switched_off) is None
    jobs = switched_off.services["jobs"]  # a training asked for by hand is not the schedule's: it runs
    async with switched_off.db.transaction() as session:
        await jobs.enqueue(session, kind=TRAIN_JOB, max_attempts=1, payload={"reason": "manual"})
    await jobs.drain(timeout=120)
    assert _model_meta(switched_off) is not None
