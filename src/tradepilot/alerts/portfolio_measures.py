"""The value a P&L or risk alert compares with its threshold, for one alert now.

Nothing here re-implements a metric: returns, drawdowns and exposure come from the shared
``portfolio.metrics`` over the equity series of ``portfolio.analytics`` (daily closes, today at
the market's last prices via ``portfolio.equity``); today's realised loss is trading's own
``realised_since``, the figure the daily-loss-limit check uses.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from tradepilot.alerts import constants as k
from tradepilot.alerts.models import Alert
from tradepilot.core.errors import NotFound
from tradepilot.core.money import EXACT
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.portfolio import metrics
from tradepilot.portfolio.analytics import AnalyticsData, EquitySeries, Window
from tradepilot.portfolio.equity import utc_day
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Position
from tradepilot.trading.orders import realised_since, start_of_utc_day

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

HUNDRED = Decimal(100)


def _decimal(x: float) -> Decimal | None:
    return None if not np.isfinite(x) else Decimal(repr(round(float(x), 10)))


def holds(alert: Alert, value: Decimal) -> bool:
    """Whether ``value`` meets the alert: P&L by its direction, risk at or above the threshold."""
    if alert.kind == k.PNL and alert.direction == "below":
        return value <= alert.threshold
    return value >= alert.threshold


async def measure(runtime: Runtime, alert: Alert) -> Decimal | None:
    """The alert's current value (None: not measurable yet, e.g. no position, no history)."""
    if alert.kind == k.PNL and alert.condition == k.POSITION:
        return await _position_pnl(runtime, alert)
    if alert.kind == k.RISK and alert.condition == k.DAILY_LOSS_LIMIT:
        return await _daily_loss_use(runtime, alert)
    series = await _series(runtime, alert)
    if series is None or len(series) == 0:
        return None
    equity, flows = series.floats("equity"), series.floats("net_flows")
    if alert.condition == k.ACCOUNT:
        if alert.unit == k.PERCENT:
            return _pct(metrics.time_weighted_return(equity, flows))
        return EXACT.subtract(EXACT.subtract(series.equity[-1], series.equity[0]), sum(series.net_flows[1:], Decimal(0)))
    if alert.condition == k.DAILY:
        if len(series) < 2:
            return None
        if alert.unit == k.PERCENT:
            return _pct(metrics.simple_returns(equity[-2:], flows[-2:])[-1])
        return EXACT.subtract(EXACT.subtract(series.equity[-1], series.equity[-2]), series.net_flows[-1])
    if alert.condition == k.DRAWDOWN:
        drawdown = metrics.drawdown_series(metrics.simple_returns(equity, flows))
        return _pct(-drawdown[-1]) if drawdown.size else None
    values = np.array([float(v) for a, v in series.values[-1].items() if a != series.currency])
    if alert.condition == k.EXPOSURE:
        gross, _ = metrics.exposure(values.reshape(1, -1), equity[-1:])
        return _pct(gross[-1])
    if alert.condition == k.CONCENTRATION:  # each holding as its own one-asset "portfolio"
        if values.size == 0:
            return Decimal(0)
        gross, _ = metrics.exposure(values.reshape(-1, 1), np.full(values.size, equity[-1]))
        return _pct(float(np.nanmax(gross)))
    return None


def _pct(fraction: float) -> Decimal | None:
    value = _decimal(fraction)
    return None if value is None else value * HUNDRED


async def _series(runtime: Runtime, alert: Alert) -> EquitySeries | None:
    data = AnalyticsData(runtime)
    async with runtime.db.read() as session:
        try:
            accounts = await data.accounts(session, alert.user_id, alert.account_id)
        except NotFound:
            return None
        session.expunge_all()  # keep the loaded rows usable after the read ends
        await session.rollback()
    today = utc_day(runtime.clock.now())
    start: date | None = None if alert.condition in (k.ACCOUNT, k.DRAWDOWN) else today
    return await data.series(accounts, Window(start, today))


async def _position_pnl(runtime: Runtime, alert: Alert) -> Decimal | None:
    market = runtime.services.get("market")
    last = market.last_price(alert.symbol) if market is not None and alert.symbol else None
    if last is None:
        return None
    async with runtime.db.read() as session:
        query = select(Position).join(TradingAccount, TradingAccount.id == Position.account_id).where(
            Position.user_id == alert.user_id, Position.symbol == alert.symbol)
        query = query.where(TradingAccount.id == alert.account_id) if alert.account_id \
            else query.where(TradingAccount.is_default.is_(True))
        position = await session.scalar(query)
        session.expunge_all()  # keep the loaded rows usable after the read ends
        await session.rollback()
    if position is None or not position.quantity or position.average_entry_price is None:
        return None
    cost = EXACT.multiply(position.average_entry_price, position.quantity)
    pnl = EXACT.multiply(EXACT.subtract(last, position.average_entry_price), position.quantity)
    if alert.unit == k.PERCENT:
        return EXACT.divide(EXACT.multiply(pnl, HUNDRED), cost) if cost else None
    return pnl


async def _daily_loss_use(runtime: Runtime, alert: Alert) -> Decimal | None:
    async with runtime.db.read() as session:
        user = await session.get(User, alert.user_id)
        limit = settings_of(user).risk.daily_loss_limit if user is not None else None
        realised = await realised_since(session, alert.user_id, start_of_utc_day(runtime.clock.now()))
        session.expunge_all()  # keep the loaded rows usable after the read ends
        await session.rollback()
    if not limit:
        return None
    loss = max(-realised, Decimal(0))
    return EXACT.divide(EXACT.multiply(loss, HUNDRED), limit)
