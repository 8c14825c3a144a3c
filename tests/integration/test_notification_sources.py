"""Domains notify through their outbox events: live strategy runs (a crash, a stop and a start
become `strategies` notifications; a run's order events do not: orders and fills notify as
such) and identity's security alerts (a `security` notification next to the alert email)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import PASSWORD, bearer, new_user
from tests.integration.notifications_support import (
    count_notifications,
    emit_user_event,
    listing,
    wait_for_notifications,
)
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.notifications.models import Notification


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"notifications_consumer_enabled": True}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


def run(status: str, **extra: object) -> dict:
    return {"run": {"id": "6f1c0d55-6a3e-4a39-9d3e-1f2f0a7c1b11", "strategy_id": "s-1", "account_id": "a-1",
                    "strategy": "sma_crossover", "symbols": ["BTC/USDT"], "status": status, "orders_placed": 3,
                    "orders_rejected": 1, **extra}}


async def test_a_strategy_crash_stop_and_start_notify_and_its_orders_do_not(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    await emit_user_event(runtime, profile["id"], "strategy_run.started", run("running"))
    await emit_user_event(runtime, profile["id"], "strategy_run.order", run("running", order={"id": "o-1"}))
    await emit_user_event(runtime, profile["id"], "strategy_run.failed",
                          run("failed", stop_reason="error", error="ZeroDivisionError: division by zero in on_bar"))
    await emit_user_event(runtime, profile["id"], "strategy_run.stopped", run("stopped", stop_reason="panic"))
    await wait_for_notifications(runtime, profile["id"], 3, category="strategies")
    items = {n["title"].split(":")[0]: n for n in (await listing(client, tokens, category="strategies"))["items"]}
    assert sorted(n["title"] for n in items.values()) == ["Strategy failed: sma_crossover on BTC/USDT",
                                                          "Strategy started: sma_crossover on BTC/USDT",
                                                          "Strategy stopped: sma_crossover on BTC/USDT"]
    failed = items["Strategy failed"]
    assert "ZeroDivisionError: division by zero in on_bar" in failed["body"] and "rejected: 1" in failed["body"]
    assert failed["data"]["run_id"] == "6f1c0d55-6a3e-4a39-9d3e-1f2f0a7c1b11" and failed["data"]["status"] == "failed"
    assert "(panic)" in items["Strategy stopped"]["body"]
    assert await count_notifications(runtime, profile["id"]) == 3  # the order event made none


async def test_a_security_alert_reaches_the_notification_centre(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    changed = await client.post("/api/auth/change-password", headers=bearer(tokens),
                                json={"current_password": PASSWORD, "new_password": "a brand new passphrase"})
    assert changed.status_code == 204, changed.text
    await wait_for_notifications(runtime, profile["id"], 1, category="security")
    async with runtime.db.session() as session:
        rows = (await session.scalars(select(Notification).where(
            Notification.user_id == uuid.UUID(profile["id"])))).all()
    assert [(n.category, n.title) for n in rows] == [("security", "Security alert: Your password was changed")]
    assert "If this was not you" in rows[0].body and rows[0].held_until is None
