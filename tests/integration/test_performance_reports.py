"""The scheduled performance reports: yesterday's figures from the shared analytics become a
`daily_report` notification (in-app and by email with the `performance_report` template) for a
user who turned it on, once per day however often the job runs; users who did not, or who have
no trading history, get nothing."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import bearer, new_user
from tests.integration.notifications_support import NOTIFICATIONS, count_notifications
from tests.integration.orders_support import Market, wait_for
from tests.mail import text_of
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.email.delivery import OUTBOX_DIRNAME
from tradepilot.jobs.scheduler import registered_schedules
from tradepilot.market import payloads
from tradepilot.market.types import Bar
from tradepilot.notifications import constants as c
from tradepilot.notifications.models import NotificationDelivery
from tradepilot.notifications.reports import DAILY_JOB, WEEKLY_JOB, send_reports

DAY = 24 * 3600
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(START)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def daily_close(runtime, day: date, close: str) -> None:  # type: ignore[no-untyped-def]
    price = Decimal(close)
    bar = Bar(symbol="BTC/USDT", timeframe="1d", open_time=datetime(day.year, day.month, day.day, tzinfo=UTC),
              open=price, high=price, low=price, close=price, volume=Decimal(1), closed=True)
    await runtime.bus.publish(payloads.candle_event(bar))


def test_the_reports_are_scheduled() -> None:
    crons = {s.name: s.cron for s in registered_schedules()}
    assert crons[DAILY_JOB] == "10 0 * * *" and crons[WEEKLY_JOB] == "20 0 * * 1"


async def test_a_daily_report_of_yesterday_once(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    market = Market(runtime)
    _, tokens = await new_user(client)
    bystander, _ = await new_user(client)  # daily report off (the default)
    key = (await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read", "trade"]},
                             headers=bearer(tokens))).json()["key"]
    auth = {"X-API-Key": key}  # survives the clock moving days
    answer = await client.put(f"{NOTIFICATIONS}/settings", headers=auth,
                              json={"channels": {"daily_report": ["in_app", "email"]}})
    assert answer.status_code == 200 and answer.json()["channels"]["weekly_report"] == ["email"], answer.text
    # day 0: buy 1 BTC, the day closes at 100; day 1: nothing traded, it closes at 110
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    order = await client.post("/api/trading/orders", headers=auth, json={
        "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "1"})
    assert order.status_code == 201, order.text
    day0 = START.date()
    await daily_close(runtime, day0, "100")
    clock.advance(DAY)
    await market.book(bids=[("110", "50")], asks=[("111", "50")])
    await daily_close(runtime, clock.now().date(), "110")
    clock.advance(DAY - 9 * 3600 + 600)  # day 2, 00:10 UTC: the schedule's time

    assert await send_reports(runtime, c.DAILY_REPORT) == 1
    assert await send_reports(runtime, c.DAILY_REPORT) == 0  # a second run (a retry, a replica) sends nothing
    assert await count_notifications(runtime, bystander["id"]) == 0
    items = (await client.get(NOTIFICATIONS, params={"category": "daily_report"}, headers=auth)).json()["items"]
    [report] = items
    assert report["title"] == "Daily performance report: 2026-03-03"
    data = report["data"]
    assert (data["first_day"], data["last_day"], data["currency"]) == ("2026-03-03", "2026-03-03", "USDT")
    assert Decimal(data["pnl"]) == Decimal(10) and Decimal(data["net_flows"]) == 0  # 1 BTC from 100 to 110
    assert Decimal(data["equity_end"]) - Decimal(data["equity_start"]) == Decimal(10)
    assert data["trades"] == 0 and Decimal(data["return_percent"]) > 0
    assert "P&L: 10" in report["body"]
    # by email (the mail outbox without SMTP), with the performance report template and the figures
    async with runtime.db.session() as session:
        delivery = await session.scalar(select(NotificationDelivery).where(
            NotificationDelivery.notification_id == uuid.UUID(report["id"]), NotificationDelivery.channel == "email"))
    assert delivery is not None
    eml = Path(runtime.settings.data_dir) / OUTBOX_DIRNAME / f"{delivery.job_id}.eml"
    await wait_for(eml.exists, "the report's email")
    mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    text, html = text_of(mail), str(mail.get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]
    assert mail["Subject"] == report["title"] and f"<notification-{report['id']}@" in mail["Message-ID"]
    assert f"Equity: {data['equity_start']} -> {data['equity_end']} USDT" in text and f"[#{report['id']}]" in text
    assert "/api/analytics/report?period=1d" in html and "Largest drawdown" in html
    # the weekly report is on by default; a user with no history in the week gets none
    lonely, _ = await new_user(client)
    await send_reports(runtime, c.WEEKLY_REPORT)
    [weekly] = (await client.get(NOTIFICATIONS, params={"category": "weekly_report"}, headers=auth)).json()["items"]
    assert weekly["title"] == "Weekly performance report: 2026-02-25 – 2026-03-03"
    assert Decimal(weekly["data"]["pnl"]) == Decimal(weekly["data"]["equity_end"]) - Decimal(
        weekly["data"]["equity_start"]) - Decimal(weekly["data"]["net_flows"])
    assert await count_notifications(runtime, lonely["id"]) == 0
