"""Firing an alert: exactly once per eligible moment, whoever evaluates it.

One conditional UPDATE claims the firing — ``status = 'active'`` and the cool-down passed
(``next_eligible_at`` NULL or ≤ now) — and moves the alert on (a one-shot alert becomes
``triggered``; a recurring one gets its next ``next_eligible_at``). Only if it claimed a row
does the caller's transaction add the trigger record and the ``alert.triggered`` outbox event
(from which the notification consumer makes the notification). Two engines evaluating the
same tick therefore fire it once: the second UPDATE matches nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import case, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.alerts.constants import ALERT_TRIGGERED, TOPIC_KIND, AlertStatus
from tradepilot.alerts.describe import describe_trigger
from tradepilot.alerts.models import Alert, AlertTrigger
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit, jsonable

STORED_PLACES = Decimal("1e-10")


async def fire(session: AsyncSession, alert_id: uuid.UUID, *, now: datetime, value: Decimal,
               detail: dict[str, Any] | None = None) -> AlertTrigger | None:
    """Fire the alert if it may fire now; the trigger, or None (already fired, cooling down,
    paused, cancelled or deleted)."""
    claimed = (await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == AlertStatus.ACTIVE,
               or_(Alert.next_eligible_at.is_(None), Alert.next_eligible_at <= now))
        .values(trigger_count=Alert.trigger_count + 1, last_triggered_at=now, updated_at=now,
                status=case((Alert.recurring.is_(True), Alert.status), else_=AlertStatus.TRIGGERED))
        .returning(Alert)
        .execution_options(synchronize_session=False, populate_existing=True)
    )).scalars().first()
    if claimed is None:
        return None
    value = storable(value)
    if claimed.recurring:
        claimed.next_eligible_at = now + timedelta(seconds=claimed.cooldown_seconds)
    trigger = AlertTrigger(alert_id=claimed.id, user_id=claimed.user_id, triggered_at=now, value=value,
                           detail=jsonable(detail or {}))
    session.add(trigger)
    await session.flush()
    title, body = describe_trigger(claimed, value)
    await emit(session, topic=Topics.user(claimed.user_id, TOPIC_KIND), type=ALERT_TRIGGERED, user_id=claimed.user_id,
               payload={"alert": alert_summary(claimed), "trigger_id": trigger.id, "value": value,
                        "title": title, "body": body, "triggered_at": now})
    return trigger


def storable(value: Decimal) -> Decimal:
    """A computed ratio has more decimals than a money column keeps: 10 are plenty for a trigger."""
    exponent = value.as_tuple().exponent
    return value.quantize(STORED_PLACES) if isinstance(exponent, int) and exponent < -10 else value


def alert_summary(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "kind": alert.kind, "condition": alert.condition, "symbol": alert.symbol,
            "threshold": alert.threshold, "status": alert.status, "recurring": alert.recurring,
            "message": alert.message}
