"""HTTP edge of alerts: /api/alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Response, status

from tradepilot.alerts.deps import Alerts, OwnedAlert, ReadUser
from tradepilot.alerts.models import Alert
from tradepilot.alerts.schemas import (
    AlertOut,
    PnlAlertCreate,
    PriceAlertCreate,
    RiskAlertCreate,
    StatusUpdate,
    TriggerOut,
)
from tradepilot.core.deps import DbSession
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page

router = api_router(prefix="/api/alerts", tags=["alerts"])
_NOT_FOUND = {404: {"description": "No such alert, or not yours (alert_not_found)"}}
_CREATED = {409: {"description": "The plan's alerts limit is reached (alert_limit_reached)"},
            422: {"description": "validation_error, decimal_precision_loss"}}


def alert_out(row: Alert) -> AlertOut:
    return AlertOut.model_validate(row)


async def _created(db: DbSession, row: Alert) -> AlertOut:
    out = alert_out(row)
    await db.commit()
    return out


@router.get("", response_model=Page[AlertOut], summary="Your alerts")
async def list_alerts(
    principal: ReadUser, db: DbSession, alerts: Alerts,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[Literal["active", "paused", "cancelled", "triggered"] | None, Query(alias="status")] = None,
    kind: Literal["price", "pnl", "risk"] | None = None,
) -> Page[AlertOut]:
    """Newest first."""
    rows, next_cursor = await alerts.page(db, user_id=principal.id, status=status_, kind=kind, limit=limit,
                                          cursor=cursor)
    return Page[AlertOut](items=[alert_out(r) for r in rows], next_cursor=next_cursor)


@router.post("/price", status_code=status.HTTP_201_CREATED, response_model=AlertOut, summary="A price alert",
             responses={**_CREATED, 404: {"description": "Unknown symbol (unknown_symbol)"}})
async def create_price_alert(body: PriceAlertCreate, principal: ReadUser, db: DbSession, alerts: Alerts) -> AlertOut:
    """`above` / `below` a price, `crosses` it (from one side to the other between two trades), or
    `percent_change` within a window (`1m` … `24h`)."""
    return await _created(db, await alerts.create_price(db, principal.id, body))


@router.post("/pnl", status_code=status.HTTP_201_CREATED, response_model=AlertOut, summary="A P&L alert",
             responses={**_CREATED, 404: {"description": "unknown_symbol, account_not_found"}})
async def create_pnl_alert(body: PnlAlertCreate, principal: ReadUser, db: DbSession, alerts: Alerts) -> AlertOut:
    """A position's unrealised P&L, the account's P&L since its start, or today's P&L; absolute or percent."""
    return await _created(db, await alerts.create_pnl(db, principal.id, body))


@router.post("/risk", status_code=status.HTTP_201_CREATED, response_model=AlertOut, summary="A risk alert",
             responses={**_CREATED, 404: {"description": "account_not_found"}})
async def create_risk_alert(body: RiskAlertCreate, principal: ReadUser, db: DbSession, alerts: Alerts) -> AlertOut:
    """Drawdown, gross exposure, concentration (largest position) or use of your daily loss limit, in percent."""
    return await _created(db, await alerts.create_risk(db, principal.id, body))


@router.get("/{alert_id}", response_model=AlertOut, summary="An alert", responses=_NOT_FOUND)
async def get_alert(alert: OwnedAlert, principal: ReadUser) -> AlertOut:
    return alert_out(alert)


@router.get("/{alert_id}/triggers", response_model=Page[TriggerOut], summary="An alert's trigger history",
            responses=_NOT_FOUND)
async def list_triggers(
    alert: OwnedAlert, principal: ReadUser, db: DbSession, alerts: Alerts,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[TriggerOut]:
    """Newest first."""
    rows, next_cursor = await alerts.triggers(db, alert=alert, limit=limit, cursor=cursor)
    return Page[TriggerOut](items=[TriggerOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.put("/{alert_id}/status", response_model=AlertOut, summary="Pause, resume or cancel an alert",
            responses={**_NOT_FOUND, 409: {"description": "Already cancelled or fired (alert_final)"}})
async def set_status(body: StatusUpdate, alert: OwnedAlert, principal: ReadUser, db: DbSession,
                     alerts: Alerts) -> AlertOut:
    row = await alerts.set_status(db, alert, body.status)
    out = alert_out(row)
    await db.commit()
    return out


@router.delete("/{alert_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an alert and its history",
               responses=_NOT_FOUND)
async def delete_alert(alert: OwnedAlert, principal: ReadUser, db: DbSession, alerts: Alerts) -> Response:
    await alerts.remove(db, alert)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
