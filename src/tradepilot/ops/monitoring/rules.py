"""Operator alert rules on measurements: evaluated on every replica, fired and resolved once.

Each replica measures with its own readings (its requests, its feed, its disk) and moves a
rule's state with a conditional update: ``ok → firing`` succeeds for exactly one replica, which
notifies the admins in the same transaction; ``firing → ok`` is done by the replica that fired
it (its measurement recovered), or by any replica once that one is gone. So a rule notifies
once when it fires and once when it resolves, however many replicas run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.db import Database
from tradepilot.identity.models import User
from tradepilot.ops.monitoring.models import AlertRuleState, MonitoringRule

ERROR_RATE = "error_rate"  # share of requests answered 5xx in the window, 0..1
LATENCY_P95 = "latency_p95_ms"  # 95th percentile of request latency in the window
FEED_STALENESS = "feed_staleness_seconds"  # since the last market trade this replica saw
DISK_FREE = "disk_free_percent"  # free space on the data directory's filesystem
BACKUP_AGE = "backup_age_hours"  # since the newest backup (none: infinite)
METRICS = {
    ERROR_RATE: "Server errors (5xx) as a share of requests, 0..1, over the window",
    LATENCY_P95: "95th percentile request latency in milliseconds over the window",
    FEED_STALENESS: "Seconds since this replica last saw a market trade",
    DISK_FREE: "Free space on the data directory's filesystem, percent",
    BACKUP_AGE: "Hours since the newest backup",
}
OPERATORS = (">", "<")

Measure = Callable[[str, int], Awaitable[float | None]]
Notify = Callable[[AsyncSession, MonitoringRule, str, float, datetime], Awaitable[None]]


def breached(rule: MonitoringRule, value: float) -> bool:
    return value > rule.threshold if rule.operator == ">" else value < rule.threshold


async def evaluate_rules(db: Database, *, now: datetime, replica_id: str, live_replicas: set[str],
                         measure: Measure, notify: Notify) -> list[tuple[str, str]]:
    """One pass over the enabled rules; the transitions this replica made, as (rule name, new state)."""
    async with db.session() as session:
        rules = list(await session.scalars(select(MonitoringRule).where(MonitoringRule.enabled.is_(True))))
        session.expunge_all()
    changes: list[tuple[str, str]] = []
    for rule in rules:
        value = await measure(rule.metric, rule.window_seconds)
        async with db.transaction() as session:
            await session.execute(update(MonitoringRule).where(MonitoringRule.id == rule.id)
                                  .values(last_value=value, last_evaluated_at=now)
                                  .execution_options(synchronize_session=False))
            if value is None:
                continue  # nothing to measure (no requests in the window): the state stays
            if breached(rule, value) and rule.state == AlertRuleState.OK:
                moved = await _move(session, rule, AlertRuleState.OK, AlertRuleState.FIRING, now,
                                    fired_at=now, fired_by=replica_id, resolved_at=None)
            elif not breached(rule, value) and rule.state == AlertRuleState.FIRING and (
                    rule.fired_by == replica_id or rule.fired_by not in live_replicas):
                moved = await _move(session, rule, AlertRuleState.FIRING, AlertRuleState.OK, now, resolved_at=now)
            else:
                continue
            if moved:
                state = AlertRuleState.OK if rule.state == AlertRuleState.FIRING else AlertRuleState.FIRING
                await notify(session, rule, state, value, now)
                changes.append((rule.name, state))
    return changes


async def _move(session: AsyncSession, rule: MonitoringRule, old: str, new: str, now: datetime,
                **values: object) -> bool:
    result = await session.execute(
        update(MonitoringRule).where(MonitoringRule.id == rule.id, MonitoringRule.state == old)
        .values(state=new, updated_at=now, **values).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def active_admins(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).where(User.role == "admin", User.is_active.is_(True))))


def describe(rule: MonitoringRule, state: str, value: float) -> tuple[str, str]:
    """The notification's title and body."""
    if state == AlertRuleState.FIRING:
        title = f"Monitoring alert firing: {rule.name}"
        body = (f"{rule.metric} is {value:g} ({rule.operator} {rule.threshold:g}). "
                f"{METRICS.get(rule.metric, '')}. See docs/operations.md, 'Alerts'.")
    else:
        title = f"Monitoring alert resolved: {rule.name}"
        body = f"{rule.metric} is back to {value:g} (rule: {rule.operator} {rule.threshold:g})."
    return title, body
