"""The ``ai.fetch_feeds`` job: the operator's RSS/Atom feeds, every 15 minutes (``ai/feeds.py``).

The schedule fires once across replicas; with no feed configured (or
``TRADEPILOT_AI_FEEDS_ENABLED=false``) a run does nothing. A feed that fails is recorded and
logged, and the job still succeeds: retrying would fetch the healthy feeds again for nothing,
and the next firing tries the failed one anyway.
"""

from __future__ import annotations

from typing import Any

from tradepilot.ai.feeds import fetch_feeds
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule

FETCH_JOB = "ai.fetch_feeds"
SCHEDULE = schedule("ai.fetch_feeds.quarter_hourly", "*/15 * * * *", FETCH_JOB, {"reason": "scheduled"},
                    max_attempts=1)


@job_handler(FETCH_JOB, timeout_seconds=600)
async def run_fetch_feeds(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    settings = ctx.runtime.settings
    if payload.get("reason") == "scheduled" and not settings.ai_feeds_enabled:
        return {"skipped": "TRADEPILOT_AI_FEEDS_ENABLED is false"}
    if not settings.ai_feeds:
        return {"feeds": []}
    await ctx.progress(0.0, f"fetching {len(settings.ai_feeds)} feeds")
    outcomes = await fetch_feeds(ctx.runtime)
    return {"feeds": [o.as_dict() for o in outcomes]}
