"""Scheduled performance reports: the analytics figures of a past day or week, sent as a
notification of category ``daily_report`` or ``weekly_report`` on the channels the user chose
for it (email renders them with the ``performance_report`` template).

Two schedules of the core scheduler (so once across replicas): every day at 00:10 UTC about
yesterday, every Monday at 00:20 UTC about the seven days before. The figures come from the
shared analytics (``portfolio.analytics`` equity series, ``portfolio.metrics``) — never computed
again here. Each report is made at most once per user and period: its ``source_event_id``
(``report-d-20261127``) is unique per user, and a user who already has it is skipped, so a
retried or repeated run sends nothing twice. A user with the category turned off (the daily
report is off by default) or without a trading account gets nothing, and nothing is computed.
"""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.core.errors import NotFound
from tradepilot.core.money import to_plain_string
from tradepilot.identity.models import User
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.notifications import constants as c
from tradepilot.notifications.models import Notification
from tradepilot.notifications.pause import wait_out_maintenance
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.settings import load_preferences
from tradepilot.notifications.sources import Draft
from tradepilot.portfolio import metrics
from tradepilot.portfolio.analytics import AnalyticsData, Window
from tradepilot.portfolio.equity import utc_day

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.notifications")

DAILY_JOB = "notifications.daily_reports"
WEEKLY_JOB = "notifications.weekly_reports"
DAILY_SCHEDULE = schedule(DAILY_JOB, "10 0 * * *", DAILY_JOB, max_attempts=3)
WEEKLY_SCHEDULE = schedule(WEEKLY_JOB, "20 0 * * 1", WEEKLY_JOB, max_attempts=3)
PERIODS = {c.DAILY_REPORT: (1, "d", "Daily"), c.WEEKLY_REPORT: (7, "w", "Weekly")}
PERCENT = Decimal("0.01")


def _percent(fraction: float) -> str | None:
    return None if math.isnan(fraction) else to_plain_string((Decimal(repr(fraction)) * 100).quantize(PERCENT))


async def report_figures(runtime: Runtime, user_id: Any, first: date, last: date) -> dict[str, Any] | None:
    """The user's figures over ``first``..``last`` (UTC days); None without accounts or history.

    The start is the close of the day before ``first`` when recorded (else the first recorded
    day: an account opened within the period); P&L is the equity change net of deposits and
    withdrawals, the return the time-weighted one."""
    data = AnalyticsData(runtime)
    async with runtime.db.session() as session:
        try:
            accounts = await data.accounts(session, user_id, None)
        except NotFound:
            return None
    series = await data.series(accounts, Window(first, last))
    if not series.dates or series.dates[-1] < first:
        return None
    rows = range(1, len(series.dates))  # the first point is the start (base point or first recorded day)
    start, end = series.equity[0], series.equity[-1]
    flows = sum((series.net_flows[i] for i in rows), Decimal(0))
    report = metrics.performance_report(series.floats("equity"), series.floats("net_flows"), series.datetimes())
    return {"first_day": first.isoformat(), "last_day": last.isoformat(), "currency": series.currency,
            "equity_start": to_plain_string(start), "equity_end": to_plain_string(end),
            "net_flows": to_plain_string(flows), "pnl": to_plain_string(end - start - flows),
            "fees": to_plain_string(sum((series.fees[i] for i in rows), Decimal(0))),
            "realised_pnl": to_plain_string(sum((series.realised_pnl[i] for i in rows), Decimal(0))),
            "trades": sum(series.trades[i] for i in rows),
            "return_percent": _percent(report.time_weighted_return),
            "max_drawdown_percent": _percent(abs(report.max_drawdown))}


def draft_of(category: str, figures: dict[str, Any]) -> Draft:
    days, _, label = PERIODS[category]
    span = figures["last_day"] if days == 1 else f"{figures['first_day']} – {figures['last_day']}"
    currency = figures["currency"]
    lines = [f"Equity: {figures['equity_start']} → {figures['equity_end']} {currency}",
             f"P&L: {figures['pnl']} {currency} (deposits and withdrawals excluded: {figures['net_flows']})"]
    if figures["return_percent"] is not None:
        lines.append(f"Return (time-weighted): {figures['return_percent']}%")
    if figures["max_drawdown_percent"] is not None:
        lines.append(f"Largest drawdown: {figures['max_drawdown_percent']}%")
    lines.append(f"Trades: {figures['trades']}, fees {figures['fees']} {currency}")
    period = "1d" if days == 1 else "7d"
    return Draft(category, f"{label} performance report: {span}", "\n".join(lines),
                 {**figures, "report_path": f"/api/analytics/report?period={period}"})


async def send_reports(runtime: Runtime, category: str) -> int:
    """Make this period's report for every user who wants it; how many were made."""
    days, tag, _ = PERIODS[category]
    last = utc_day(runtime.clock.now()) - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    key = f"report-{tag}-{last:%Y%m%d}"
    async with runtime.db.read() as session:
        user_ids = list(await session.scalars(select(User.id).where(User.is_active.is_(True)).order_by(User.id)))
        await session.rollback()
    made = 0
    for user_id in user_ids:
        async with runtime.db.transaction() as session:
            user = await session.get(User, user_id)
            if user is None:
                continue
            prefs = await load_preferences(session, user.id, user.timezone)
            if not prefs.channels_for(category) or await session.scalar(select(Notification.id).where(
                    Notification.user_id == user.id, Notification.source_event_id == key)) is not None:
                continue
        figures = await report_figures(runtime, user_id, first, last)
        if figures is None:
            continue
        async with runtime.db.transaction() as session:
            user = await session.get(User, user_id)
            if user is None or await session.scalar(select(Notification.id).where(
                    Notification.user_id == user_id, Notification.source_event_id == key)) is not None:
                continue  # made meanwhile by another run
            row = await notifications_of(runtime).create(session, user=user, draft=draft_of(category, figures),
                                                         now=runtime.clock.now(), source_event_id=key)
            made += row is not None
    logger.info("performance reports made", extra={"category": category, "reports": made})
    return made


@job_handler(DAILY_JOB, timeout_seconds=1800)
async def daily_reports(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    await wait_out_maintenance(ctx.runtime)
    return {"reports": await send_reports(ctx.runtime, c.DAILY_REPORT)}


@job_handler(WEEKLY_JOB, timeout_seconds=1800)
async def weekly_reports(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    await wait_out_maintenance(ctx.runtime)
    return {"reports": await send_reports(ctx.runtime, c.WEEKLY_REPORT)}
