"""HTTP edge of reconciliation: a live account's recent runs and their differences, and a run now."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import select

from tradepilot.core.cursors import decode_seq_cursor, seq_cursor
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page, Schema
from tradepilot.trading.deps import OwnedAccount, ReadUser, TradeUser
from tradepilot.trading.live.reconciliation_models import ReconciliationRun
from tradepilot.trading.live.reconciliation_owner import supervisor
from tradepilot.trading.live.reconciliation_writer import run_payload

router = api_router(prefix="/api/trading/accounts", tags=["trading"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such account, or not yours (account_not_found)"},
    422: {"description": "Not a live account (live_account_required)"}}


class ReconciliationRunOut(Schema):
    id: uuid.UUID
    account_id: uuid.UUID
    seq: int = Field(description="1, 2, 3… per account")
    trigger: Literal["startup", "periodic", "manual", "reconnect", "stream"]
    status: Literal["ok", "differences", "failed"]
    differences: list[dict[str, Any]] = Field(description=(
        "What the exchange and the platform disagreed on, and what was done: `kind` (pending_adopted, "
        "pending_not_found, fills_recorded, closed_on_exchange, external_order, external_fills, balance_changed, "
        "balance_unresolved), `detail`, and the order, symbol or asset concerned"))
    error_code: str | None = Field(description="Why the run failed (the exchange's error code); the next run retries")
    started_at: datetime
    finished_at: datetime


class ReconcileRequested(Schema):
    status: Literal["requested"] = "requested"
    detail: str


def _live(account: Any) -> None:
    if not account.is_live:
        raise Unprocessable("Reconciliation is for live accounts: a paper account has nothing to compare with.",
                            code="live_account_required")


@router.get("/{account_id}/reconciliation", response_model=Page[ReconciliationRunOut],
            summary="A live account's reconciliation runs", responses=_RESPONSES)
async def list_runs(
    account: OwnedAccount,
    principal: ReadUser,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ReconciliationRunOut]:
    """Newest first: each run (at start-up, periodic, or asked for) with the differences it found
    between the exchange and the platform and what it did about each."""
    _live(account)
    query = select(ReconciliationRun).where(ReconciliationRun.account_id == account.id)
    if cursor is not None:
        query = query.where(ReconciliationRun.seq < decode_seq_cursor(cursor))
    rows = list(await db.scalars(query.order_by(ReconciliationRun.seq.desc()).limit(limit + 1)))
    next_cursor = seq_cursor(rows[limit - 1].seq) if len(rows) > limit else None
    return Page[ReconciliationRunOut](items=[ReconciliationRunOut.model_validate(run_payload(r))
                                             for r in rows[:limit]], next_cursor=next_cursor)


@router.post("/{account_id}/reconcile", response_model=ReconciliationRunOut, summary="Reconcile a live account now",
             responses={**_RESPONSES,
                        202: {"model": ReconcileRequested,
                              "description": "Another replica holds the account: the run was asked of it"},
                        503: {"description": "Reconciliation is switched off on this server (reconciliation_disabled)"}})
async def reconcile_now(account: OwnedAccount, principal: TradeUser, db: DbSession, runtime: RuntimeDep) -> Response:
    """Compare the account with the exchange now and record what differs (see `GET …/reconciliation`).
    Answered with the run when this replica reconciles the account; 202 when another does."""
    _live(account)
    service = supervisor(runtime)
    if service is None:
        raise ServiceUnavailable("Reconciliation of live accounts is switched off on this server.",
                                 code="reconciliation_disabled")
    await db.commit()  # end the ownership read: nothing is held across the network
    run = await service.request(account.id)
    if run is None:
        body = ReconcileRequested(detail="The replica that reconciles this account was asked to run now.")
        return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    return JSONResponse(ReconciliationRunOut.model_validate(run_payload(run)).model_dump(mode="json"))
