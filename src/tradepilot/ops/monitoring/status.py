"""``GET /api/system/status``: each component's state and last error, as this replica sees it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from tradepilot import __version__
from tradepilot.ops.monitoring.uptime import live_replicas

if TYPE_CHECKING:
    from tradepilot.ops.monitoring.system import MonitoringSystem

PROBE_TIMEOUT = 2.0
FEED_STALE_SECONDS = 60.0
RECENT_FAILURES = timedelta(hours=1)


async def _probe(system: MonitoringSystem, name: str, check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=PROBE_TIMEOUT)
        state = "up"
    except Exception as exc:  # noqa: BLE001 - a status page reports failures, it does not raise them
        system.note_component_error(name, f"{type(exc).__name__}: {exc}"[:500])
        state = "down"
    return {"state": state, "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            **_last_error(system, name)}


def _last_error(system: MonitoringSystem, name: str) -> dict[str, Any]:
    error = system.component_errors.get(name)
    return {"last_error": error[0] if error else None, "last_error_at": error[1] if error else None}


def _feeds(system: MonitoringSystem) -> dict[str, Any]:
    settings = system.runtime.settings
    staleness = system.feed_staleness()
    if system.last_trade_at is None:
        state = "waiting"
    elif staleness is not None and staleness > FEED_STALE_SECONDS:
        state = "stale"
        system.note_component_error("feeds", f"no market trade for {staleness:.0f} s")
    else:
        state = "up"
    return {"state": state, "feed": settings.market_feed, "owner_here": settings.market_feed_owner,
            "symbols": len(settings.market_symbols), "last_trade_at": system.last_trade_at,
            "staleness_seconds": None if staleness is None else round(staleness, 1), **_last_error(system, "feeds")}


async def _job_queue(system: MonitoringSystem) -> dict[str, Any]:
    from tradepilot.jobs.models import Job, JobStatus

    now = system.clock.now()
    async with system.runtime.db.read() as session:
        counts = dict((await session.execute(
            select(Job.status, func.count()).where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .group_by(Job.status))).all())
        failed = (await session.execute(
            select(Job.kind, Job.error, Job.finished_at).where(Job.status.in_([JobStatus.FAILED, JobStatus.DEAD]))
            .order_by(Job.finished_at.desc()).limit(1))).first()
        await session.rollback()
    recent = failed is not None and failed.finished_at is not None and now - failed.finished_at <= RECENT_FAILURES
    return {"state": "degraded" if recent else "up", "queued": counts.get(JobStatus.QUEUED, 0),
            "running": counts.get(JobStatus.RUNNING, 0), "in_process_workers": "jobs" in system.runtime.services,
            "last_error": f"{failed.kind}: {failed.error}"[:500] if failed else None,
            "last_error_at": failed.finished_at if failed else None}


async def _strategies(system: MonitoringSystem) -> dict[str, Any]:
    """Live strategy runs (strategies.runs) when this build has them; else said plainly."""
    try:
        from tradepilot.strategies.runs.models import RunStatus, StrategyRun
    except ImportError:
        return {"state": "not_available", "running": None, "last_error": None, "last_error_at": None}
    try:
        async with system.runtime.db.read() as session:
            running = await session.scalar(select(func.count()).select_from(StrategyRun)
                                           .where(StrategyRun.status == RunStatus.RUNNING))
            failed = (await session.execute(
                select(StrategyRun.strategy, StrategyRun.error, StrategyRun.updated_at)
                .where(StrategyRun.status == RunStatus.FAILED)
                .order_by(StrategyRun.updated_at.desc()).limit(1))).first()
            await session.rollback()
    except Exception as exc:  # noqa: BLE001 - e.g. the table is not migrated yet
        return {"state": "not_available", "running": None, "last_error": type(exc).__name__, "last_error_at": None}
    return {"state": "up", "running": int(running or 0),
            "last_error": f"{failed.strategy}: {failed.error}"[:500] if failed else None,
            "last_error_at": failed.updated_at if failed else None}


async def system_status(system: MonitoringSystem) -> dict[str, Any]:
    from tradepilot.ops.backup.maintenance import get_maintenance

    runtime = system.runtime
    settings = runtime.settings
    components: dict[str, Any] = {"database": await _probe(system, "database", runtime.db.ping)}
    if runtime.redis is not None:
        components["redis"] = await _probe(system, "redis", runtime.redis.ping)
    else:
        components["redis"] = {"state": "disabled", "last_error": None, "last_error_at": None}
    components["feeds"] = _feeds(system)
    components["job_queue"] = await _job_queue(system)
    components["strategies"] = await _strategies(system)
    maintenance = await get_maintenance(runtime).current()
    now = system.clock.now()
    replicas = await live_replicas(runtime.db, now=now, interval=settings.monitoring_heartbeat_seconds)
    return {
        "version": __version__,
        "replica_id": system.replica_id,
        "started_at": system.started_at,
        "uptime_seconds": round(time.monotonic() - system.started_monotonic, 1),
        "mode": {"environment": settings.env, "database": runtime.db.dialect,
                 "distributed": runtime.redis is not None, "maintenance": maintenance is not None,
                 "maintenance_reason": maintenance.reason if maintenance else None},
        "replicas": [{"replica_id": row.replica_id, "host": row.host, "pid": row.pid, "version": row.version,
                      "up_since": row.started_at, "last_heartbeat_at": row.last_beat_at} for row in replicas],
        "components": components,
    }
