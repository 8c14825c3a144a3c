"""The ``ai.train_direction`` job: direction models trained from the candle store, saved to the registry.

Enqueued by the daily schedule (02:41 UTC, once across replicas), by ``start_ai`` at start-up
while no configured model exists yet (a fresh install trains on its back-filled history), and
by anyone with a payload naming ``targets``. Without targets it trains every configured one:
``TRADEPILOT_AI_DIRECTION_SYMBOLS`` (default: the market's symbols) × ``…_TIMEFRAMES`` ×
``…_HORIZONS``. A target with too little history is skipped and reported; when every target
lacks history on the start-up run (the back-fill is still being written), the job tries again
later. Each target runs in a thread (LightGBM, file reads); progress is reported per target.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.ai.direction_registry import direction_registry
from tradepilot.ai.direction_training import InsufficientHistory, Target, train_direction
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.registry import JobContext, PermanentJobError, RetryLater, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.strategies.backtest_job import candle_store

if TYPE_CHECKING:
    from tradepilot.config import Settings
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ai.training")

TRAIN_JOB = "ai.train_direction"
DAILY_SCHEDULE = schedule("ai.train_direction.daily", "41 2 * * *", TRAIN_JOB, {"reason": "scheduled"})
FIRST_START_ATTEMPTS = 13  # with FIRST_START_RETRY_SECONDS: an hour for the back-fill to land
FIRST_START_RETRY_SECONDS = 300.0


def configured_targets(settings: Settings) -> list[Target]:
    symbols = settings.ai_direction_symbols or settings.market_symbols
    return [Target(s, tf, h) for s in symbols for tf in settings.ai_direction_timeframes
            for h in settings.ai_direction_horizons]


def _targets(settings: Settings, payload: dict[str, Any]) -> list[Target]:
    given = payload.get("targets")
    if given is None:
        return configured_targets(settings)
    try:
        return [Target(str(t["symbol"]), str(t["timeframe"]), int(t["horizon"])) for t in given]
    except (KeyError, TypeError, ValueError):
        raise PermanentJobError("targets must be a list of {symbol, timeframe, horizon}") from None


@job_handler(TRAIN_JOB, timeout_seconds=6 * 3600)
async def run_train_direction(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    runtime = ctx.runtime
    reason = str(payload.get("reason", "manual"))
    if reason == "scheduled" and not runtime.settings.ai_direction_retrain_enabled:
        return {"skipped": "TRADEPILOT_AI_DIRECTION_RETRAIN_ENABLED is false"}
    targets = _targets(runtime.settings, payload)
    store, registry = candle_store(runtime), direction_registry(runtime)
    trained, skipped = [], []
    for i, target in enumerate(targets):
        await ctx.progress(i / max(len(targets), 1), f"training {target.symbol} {target.timeframe} h{target.horizon}")
        try:
            meta = await asyncio.to_thread(train_direction, store, registry, target, runtime.clock.now())
        except (InsufficientHistory, ValueError) as exc:
            skipped.append({**target.as_dict(), "reason": str(exc)})
            continue
        trained.append({**target.as_dict(), "bars": meta["bars"], "scores": meta["scores"]["model"],
                        "beats_baselines": meta["scores"]["beats_baselines"]})
        logger.info("direction model trained", extra={**target.as_dict(), "bars": meta["bars"]})
    await ctx.progress(1.0, f"{len(trained)} trained, {len(skipped)} skipped")
    if not trained and reason == "first_start" and targets:
        raise RetryLater(FIRST_START_RETRY_SECONDS, "no history to train on yet (the back-fill may still run)")
    return {"trained": trained, "skipped": skipped}


async def enqueue_first_training(runtime: Runtime) -> bool:
    """On a fresh install (no configured model yet, none being trained) enqueue a training job.

    Returns whether it did. Two replicas starting together may both enqueue one; the second
    job then retrains the same models, which is harmless.
    """
    jobs = runtime.services.get("jobs")
    if jobs is None or not runtime.settings.ai_direction_train_on_start:
        return False
    targets = configured_targets(runtime.settings)
    registry, venue = direction_registry(runtime), candle_store(runtime).venue
    if not targets or any(registry.exists(registry.key(venue, t.symbol, t.timeframe, t.horizon)) for t in targets):
        return False
    async with runtime.db.transaction() as session:
        pending = (await session.execute(select(Job.id).where(
            Job.kind == TRAIN_JOB, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))).limit(1))).first()
        if pending is not None:
            return False
        await jobs.enqueue(session, kind=TRAIN_JOB, payload={"reason": "first_start"},
                           max_attempts=FIRST_START_ATTEMPTS)
    logger.info("no direction model yet: training enqueued")
    return True
