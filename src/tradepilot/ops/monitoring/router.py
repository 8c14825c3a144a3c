"""``/api/system/{status,metrics,logs,restart}`` and ``/api/monitoring/*``: administrators only
(admin requires 2FA); a restart also needs the password re-entered within five minutes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, Depends, Query, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Conflict
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import AdminUser, get_admin
from tradepilot.identity.reauth import RecentlyReauthenticatedAdmin
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.ops.monitoring import logbook
from tradepilot.ops.monitoring.errors import error_groups
from tradepilot.ops.monitoring.models import MonitoringRule
from tradepilot.ops.monitoring.reports import metrics_summary, performance
from tradepilot.ops.monitoring.restart import RESTART_EXIT_CODE, restart_control
from tradepilot.ops.monitoring.rules import METRICS
from tradepilot.ops.monitoring.schemas import (
    AlertRuleIn,
    AlertRuleOut,
    AlertRulesOut,
    AvailabilityOut,
    ErrorGroupOut,
    ErrorGroupsOut,
    OutageOut,
    RestartAccepted,
    UptimeOut,
)
from tradepilot.ops.monitoring.status import system_status
from tradepilot.ops.monitoring.system import MonitoringSystem, monitoring_of
from tradepilot.ops.monitoring.uptime import uptime_report

system_router = api_router(prefix="/api/system", tags=["system"], dependencies=[Depends(get_admin)])
router = api_router(prefix="/api/monitoring", tags=["monitoring"], dependencies=[Depends(get_admin)])


def get_monitoring(runtime: RuntimeDep) -> MonitoringSystem:
    return monitoring_of(runtime)


Monitoring = Annotated[MonitoringSystem, Depends(get_monitoring)]
WindowSeconds = Annotated[int, Query(ge=10, le=3600, description="The window rates and percentiles cover")]


@system_router.get("/status", summary="Version, uptime, mode, replicas and each component's state")
async def get_status(monitoring: Monitoring) -> dict[str, Any]:
    return await system_status(monitoring)


@system_router.get("/metrics", summary="A JSON summary of this replica's Prometheus metrics")
async def get_metrics(monitoring: Monitoring, window: WindowSeconds = 300) -> dict[str, Any]:
    await monitoring.refresh_gauges()
    return metrics_summary(monitoring, window)


@system_router.get("/logs", summary="Recent structured log records (redacted), newest first")
async def get_logs(
    monitoring: Monitoring,
    runtime: RuntimeDep,
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None,
    logger: Annotated[str | None, Query(max_length=200, description="This logger and its children")] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    source: Literal["memory", "file"] = "memory",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """`memory`: this process's newest records (a bounded ring); `file`: the tail of
    `TRADEPILOT_LOG_FILE` (every process writing to it), 409 `log_file_not_configured` without one."""
    query = logbook.LogQuery(level=level, logger=logger, request_id=request_id, user_id=user_id, limit=limit)
    if source == "file":
        path = runtime.settings.log_file
        if path is None:
            raise Conflict("No log file is configured (TRADEPILOT_LOG_FILE).", code="log_file_not_configured")
        items = await asyncio.to_thread(lambda: logbook.search(logbook.file_entries(Path(path)), query))
    else:
        items = logbook.search(monitoring.logs.records(), query)
    return {"source": source, "items": items}


@system_router.post("/restart", status_code=status.HTTP_202_ACCEPTED, response_model=RestartAccepted,
                    summary="Graceful restart (needs a recent password re-entry)")
async def restart(admin: RecentlyReauthenticatedAdmin, runtime: RuntimeDep, db: DbSession,
                  background: BackgroundTasks) -> RestartAccepted:
    """Stops accepting connections, lets in-flight requests finish, stops every component (leases
    released, candles flushed, error counts and uptime persisted), then exits with code 75 for
    the process manager to start it again (docs/operations.md). 409 `restart_unavailable` when
    the process was not started by `tradepilot serve`."""
    control = restart_control(runtime)
    if not control.available:
        raise Conflict("This process was not started by `tradepilot serve`; restart it with its process manager.",
                       code="restart_unavailable")
    record_security_event(db, clock=runtime.clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=admin.id,
                          details={"action": "restart_requested", "exit_code": RESTART_EXIT_CODE})
    await db.commit()
    background.add_task(control.request, str(admin.id))  # after this answer is sent
    return RestartAccepted(restarting=True, exit_code=RESTART_EXIT_CODE,
                           detail="Finishing in-flight requests, then exiting for the process manager to restart.")


@router.get("/performance", summary="Latency percentiles per route and the slowest routes")
async def get_performance(monitoring: Monitoring,
                          window: Annotated[int | None, Query(ge=10, le=3600)] = None,
                          slowest: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    """Since this process started, or over the last `window` seconds."""
    return performance(monitoring, window, slowest)


@router.get("/errors", response_model=ErrorGroupsOut, summary="Unhandled errors grouped by fingerprint")
async def get_errors(monitoring: Monitoring, runtime: RuntimeDep,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ErrorGroupsOut:
    """Every replica's groups (persisted); this replica's newest counts are flushed first."""
    await monitoring.errors.persist()
    groups = await error_groups(runtime.db, limit=limit)
    return ErrorGroupsOut(items=[ErrorGroupOut.model_validate(g) for g in groups])


@router.get("/uptime", response_model=UptimeOut, summary="Availability over 24 h, 7 d and 30 d")
async def get_uptime(runtime: RuntimeDep) -> UptimeOut:
    """From the heartbeats every replica writes: a moment is up when some replica vouched for it."""
    interval = runtime.settings.monitoring_heartbeat_seconds
    report = await uptime_report(runtime.db, now=runtime.clock.now(), interval=interval)
    return UptimeOut(heartbeat_seconds=interval, windows=[
        AvailabilityOut(window=a.window, observed_seconds=round(a.observed_seconds, 3),
                        down_seconds=round(a.down_seconds, 3), availability=a.availability,
                        outages=[OutageOut(start=s, end=e, seconds=(e - s).total_seconds()) for s, e in a.outages])
        for a in report])


@router.get("/alerts", response_model=AlertRulesOut, summary="Alert rules and their state")
async def list_alert_rules(db: DbSession) -> AlertRulesOut:
    rows = await db.scalars(select(MonitoringRule).order_by(MonitoringRule.created_at, MonitoringRule.name))
    return AlertRulesOut(items=[AlertRuleOut.model_validate(r) for r in rows], metrics=METRICS)


@router.post("/alerts", status_code=status.HTTP_201_CREATED, response_model=AlertRuleOut,
             summary="Add an alert rule")
async def create_alert_rule(body: AlertRuleIn, admin: AdminUser, db: DbSession, runtime: RuntimeDep) -> AlertRuleOut:
    """Evaluated by every replica every `TRADEPILOT_MONITORING_SAMPLE_SECONDS`; notifies the
    admins once when it fires and once when it resolves. 409 `alert_rule_exists` for a taken name."""
    now = runtime.clock.now()
    row = MonitoringRule(name=body.name, metric=body.metric, operator=body.operator, threshold=body.threshold,
                         window_seconds=body.window_seconds, enabled=body.enabled, state="ok", created_by=admin.id,
                         created_at=now, updated_at=now)
    db.add(row)
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise Conflict(f"An alert rule named {body.name!r} exists.", code="alert_rule_exists") from None
    record_security_event(db, clock=runtime.clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=admin.id,
                          details={"action": "monitoring_rule_created", "rule": body.name})
    await db.commit()
    return AlertRuleOut.model_validate(row)
