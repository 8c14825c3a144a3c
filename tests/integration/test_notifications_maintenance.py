"""Maintenance mode (a restore swapping the database) pauses the alert engine, the notification
consumer and notification delivery, and they resume afterwards: nothing fires, is made or is
sent meanwhile, nothing is lost, and no delivery attempt is spent waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fakes.notify_servers import NotifyServers
from tests.helpers import bearer, new_user
from tests.integration.notifications_support import (
    ALERTS,
    count_notifications,
    emit_user_event,
    wait_for_notifications,
)
from tests.integration.orders_support import Market, wait_for
from tests.integration.test_notification_channels import (
    CHANNELS,
    channel_settings,
    notify,
    use_channels,
    wait_job,
)
from tradepilot.alerts.constants import ENGINE_KEY
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.jobs.models import JobStatus
from tradepilot.notifications.consumer import SERVICE_KEY as CONSUMER_KEY
from tradepilot.ops.backup.maintenance import RETRY_AFTER_SECONDS, get_maintenance
from tradepilot.runtime import Runtime

HOOK = "discord:maint"


@pytest.fixture
async def servers() -> AsyncIterator[NotifyServers]:
    fake = await NotifyServers().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def app(settings: Settings, clock: TestClock, servers: NotifyServers):  # type: ignore[no-untyped-def]
    application = create_app(channel_settings(settings, servers, alerts_portfolio_seconds=3600.0,
                                              notifications_consumer_enabled=True), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def ready_engine(runtime: Runtime):  # type: ignore[no-untyped-def]
    await wait_for(lambda: runtime.services.get(ENGINE_KEY) is not None, "an alert engine")
    engine = runtime.services[ENGINE_KEY]
    await asyncio.wait_for(engine.ready.wait(), 10)
    return engine


async def test_maintenance_pauses_alerts_and_notifications_and_they_resume(
        client: httpx.AsyncClient, runtime: Runtime, servers: NotifyServers, clock: TestClock) -> None:
    profile, tokens = await new_user(client)
    await client.put(f"{CHANNELS}/discord", json={"url": servers.discord_url("maint")}, headers=bearer(tokens))
    await use_channels(client, tokens, "discord")
    market = Market(runtime)
    created = await client.post(f"{ALERTS}/price", json={"symbol": "BTC/USDT", "condition": "above", "price": "101"},
                                headers=bearer(tokens))
    assert created.status_code == 201, created.text
    alert_id = created.json()["id"]
    engine = await ready_engine(runtime)
    await wait_for(lambda: alert_id in engine.index, "the engine to index the alert")

    maintenance = get_maintenance(runtime)
    await maintenance.enter("restoring a backup")
    try:
        # the engine and the consumer of this process are stopped: a trade through the level and
        # a domain event meet no one
        assert runtime.services.get(ENGINE_KEY) is None and runtime.services.get(CONSUMER_KEY) is None
        await market.trade("102", "1")
        await emit_user_event(runtime, profile["id"], "strategy.crashed", {"title": "SMA crashed", "body": "boom"})
        # a delivery job queued meanwhile waits, without spending an attempt, and sends nothing
        nid = await notify(runtime, profile["id"], title="queued during maintenance")
        start = clock.now()

        async def deferred() -> bool:
            job = (await wait_job(runtime, nid, "discord", JobStatus.QUEUED))
            return job.attempts == 0 and (job.run_after - start).total_seconds() >= RETRY_AFTER_SECONDS - 1
        await wait_for(deferred, "the delivery job to wait out maintenance", timeout=20.0)
        assert servers.received[HOOK] == []
        alert = (await client.get(f"{ALERTS}/{alert_id}", headers=bearer(tokens))).json()
        assert alert["status"] == "active" and alert["trigger_count"] == 0
        assert await count_notifications(runtime, profile["id"], category="strategies") == 0
    finally:
        await maintenance.leave()

    # afterwards: the consumer picks up the event it missed, the delivery goes out once, and a
    # new engine (on the possibly restored table) fires the alert on the next trade
    await wait_for_notifications(runtime, profile["id"], 1, category="strategies")
    clock.advance(RETRY_AFTER_SECONDS)
    job = await wait_job(runtime, nid, "discord", JobStatus.SUCCEEDED)
    assert job.attempts == 1 and len(servers.received[HOOK]) == 1
    engine = await ready_engine(runtime)
    await wait_for(lambda: alert_id in engine.index, "the new engine to index the alert")
    seen = engine.ticks_evaluated
    await market.trade("101.5", "1")
    await wait_for(lambda: engine.ticks_evaluated > seen, "the engine to evaluate the trade")
    await wait_for_notifications(runtime, profile["id"], 2, category="alerts")
    alert = (await client.get(f"{ALERTS}/{alert_id}", headers=bearer(tokens))).json()
    assert alert["status"] == "triggered" and alert["trigger_count"] == 1
