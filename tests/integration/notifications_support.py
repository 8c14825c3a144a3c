"""Helpers of the notification and alert tests: an app on a test clock, events, waiting."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.helpers import bearer
from tests.integration.orders_support import wait_for
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit
from tradepilot.notifications.models import Notification
from tradepilot.runtime import Runtime

NOTIFICATIONS = "/api/notifications"
ALERTS = "/api/alerts"


async def emit_user_event(runtime: Runtime, user_id: str, type_: str, payload: dict[str, Any]) -> str:
    """An outbox event on the user's topic, committed (as a domain's service would write it)."""
    async with runtime.db.transaction() as session:
        event = await emit(session, topic=Topics.user(user_id, "strategies"), type=type_, user_id=uuid.UUID(user_id),
                           payload=payload)
    return event.id


async def count_notifications(runtime: Runtime, user_id: str, **where: Any) -> int:
    async with runtime.db.session() as session:
        query = select(func.count()).select_from(Notification).where(Notification.user_id == uuid.UUID(user_id))
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        return int(await session.scalar(query) or 0)


async def wait_for_notifications(runtime: Runtime, user_id: str, n: int, **where: Any) -> None:
    async def enough() -> bool:
        return await count_notifications(runtime, user_id, **where) >= n
    await wait_for(enough, f"{n} notification(s)", timeout=5.0)


async def listing(client: httpx.AsyncClient, tokens: dict, **params: Any) -> dict[str, Any]:
    resp = await client.get(NOTIFICATIONS, params=params, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]
