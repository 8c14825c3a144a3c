"""AlertService: create alerts within the plan's limit, list them, change their status.

Every change emits ``alert.changed`` on the user's ``alerts`` topic in the same transaction,
so the alert engine (on whichever replica holds its lease) updates its index within
milliseconds; its periodic resync covers a lost message.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.alerts import constants as k
from tradepilot.alerts.constants import AlertStatus
from tradepilot.alerts.firing import alert_summary
from tradepilot.alerts.models import Alert, AlertTrigger
from tradepilot.alerts.schemas import PnlAlertCreate, PriceAlertCreate, Repeat, RiskAlertCreate
from tradepilot.core.errors import Conflict, NotFound, Unprocessable
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.usage import usage_counter
from tradepilot.market.service import normalize_symbol
from tradepilot.trading.deps import account_of

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


@usage_counter("alerts")
async def count_live_alerts(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Alerts that still count against the plan: active or paused (not cancelled or triggered)."""
    count = await session.scalar(select(func.count()).select_from(Alert).where(
        Alert.user_id == user_id, Alert.status.in_((AlertStatus.ACTIVE, AlertStatus.PAUSED))))
    return int(count or 0)


def alert_not_found() -> NotFound:
    return NotFound("Alert not found.", code="alert_not_found")


class AlertService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- creating ------------------------------------------------------------------------------

    async def create_price(self, session: AsyncSession, user_id: uuid.UUID, body: PriceAlertCreate) -> Alert:
        symbol = self._known_symbol(body.symbol)
        window = k.WINDOWS[body.window] if body.window else None
        threshold = body.price if body.price is not None else body.percent
        assert threshold is not None  # the schema requires one
        direction = body.direction if body.condition in (k.CROSSES, k.PERCENT_CHANGE) else None
        return await self._create(session, user_id, body, kind=k.PRICE, condition=body.condition, symbol=symbol,
                                  threshold=threshold, direction=direction, window_seconds=window)

    async def create_pnl(self, session: AsyncSession, user_id: uuid.UUID, body: PnlAlertCreate) -> Alert:
        symbol = self._known_symbol(body.symbol) if body.symbol else None
        await self._check_account(session, user_id, body.account_id)
        return await self._create(session, user_id, body, kind=k.PNL, condition=body.scope, symbol=symbol,
                                  threshold=body.threshold, direction=body.direction, unit=body.unit,
                                  account_id=body.account_id)

    async def create_risk(self, session: AsyncSession, user_id: uuid.UUID, body: RiskAlertCreate) -> Alert:
        await self._check_account(session, user_id, body.account_id)
        if body.measure == k.DAILY_LOSS_LIMIT:
            user = await session.get(User, user_id)
            if user is None or settings_of(user).risk.daily_loss_limit is None:
                raise Unprocessable("Set a daily loss limit first (PUT /api/users/me/settings, risk).",
                                    code="daily_loss_limit_not_set")
        return await self._create(session, user_id, body, kind=k.RISK, condition=body.measure, symbol=None,
                                  threshold=body.threshold, account_id=body.account_id)

    async def _create(self, session: AsyncSession, user_id: uuid.UUID, repeat: Repeat, *, kind: str, condition: str,
                      symbol: str | None, threshold: Decimal, direction: str | None = None, unit: str | None = None,
                      window_seconds: int | None = None, account_id: uuid.UUID | None = None) -> Alert:
        """Within the plan's ``alerts`` limit (409 ``alert_limit_reached``), counted under the user
        row's lock so that racing requests cannot overshoot it."""
        user = await session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                                    .execution_options(populate_existing=True))
        assert user is not None  # authenticated just now
        cap = effective_limits(user.plan, dict(settings_of(user).limits)).alerts
        if await count_live_alerts(session, user_id) >= cap:
            raise Conflict(f"Your plan allows {cap} alerts; cancel or delete one first.",
                           code="alert_limit_reached", extra={"limit": cap})
        now = self.runtime.clock.now()
        alert = Alert(user_id=user_id, kind=kind, condition=condition, symbol=symbol, account_id=account_id,
                      threshold=threshold, direction=direction, unit=unit, window_seconds=window_seconds,
                      recurring=repeat.recurring, cooldown_seconds=repeat.cooldown_seconds if repeat.recurring else 0,
                      message=repeat.message, status=AlertStatus.ACTIVE, trigger_count=0, last_triggered_at=None,
                      next_eligible_at=None, created_at=now, updated_at=now)
        session.add(alert)
        await session.flush()
        await self._changed(session, alert)
        return alert

    def _known_symbol(self, symbol: str) -> str:
        market = self.runtime.services.get("market")
        if market is None:
            return normalize_symbol(symbol)
        return market.instrument(symbol).symbol  # type: ignore[no-any-return]

    @staticmethod
    async def _check_account(session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
        if account_id is not None:
            await account_of(session, user_id, account_id)

    # -- changing ------------------------------------------------------------------------------

    async def set_status(self, session: AsyncSession, alert: Alert, status: str) -> Alert:
        """active ↔ paused, or cancelled; a cancelled or fired one-shot alert is final (409 ``alert_final``)."""
        if alert.status in AlertStatus.FINAL:
            raise Conflict(f"The alert is {alert.status}; create a new one.", code="alert_final")
        if alert.status != status:
            alert.status = status
            alert.updated_at = self.runtime.clock.now()
            await session.flush()
            await self._changed(session, alert)
        return alert

    async def remove(self, session: AsyncSession, alert: Alert) -> None:
        await session.execute(delete(Alert).where(Alert.id == alert.id))
        await emit(session, topic=Topics.user(alert.user_id, k.TOPIC_KIND), type=k.ALERT_CHANGED,
                   user_id=alert.user_id, payload={"alert": alert_summary(alert), "deleted": True})

    @staticmethod
    async def _changed(session: AsyncSession, alert: Alert) -> None:
        await emit(session, topic=Topics.user(alert.user_id, k.TOPIC_KIND), type=k.ALERT_CHANGED,
                   user_id=alert.user_id, payload={"alert": alert_summary(alert), "deleted": False})

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    async def page(session: AsyncSession, *, user_id: uuid.UUID, status: str | None, kind: str | None, limit: int,
                   cursor: str | None) -> tuple[list[Alert], str | None]:
        """Newest first."""
        query = select(Alert).where(Alert.user_id == user_id)
        if status is not None:
            query = query.where(Alert.status == status)
        if kind is not None:
            query = query.where(Alert.kind == kind)
        return await time_keyset_page(session, query, Alert.created_at, Alert.id, limit=limit, cursor=cursor)

    @staticmethod
    async def triggers(session: AsyncSession, *, alert: Alert, limit: int,
                       cursor: str | None) -> tuple[list[AlertTrigger], str | None]:
        """Newest first."""
        query = select(AlertTrigger).where(AlertTrigger.alert_id == alert.id)
        return await time_keyset_page(session, query, AlertTrigger.triggered_at, AlertTrigger.id, limit=limit,
                                      cursor=cursor)


def alerts_of(runtime: Runtime) -> AlertService:
    service = runtime.services.get(k.SERVICE_KEY)
    if service is None:
        service = runtime.services[k.SERVICE_KEY] = AlertService(runtime)
    return service  # type: ignore[no-any-return]
