"""HTTP edge of the trading reports: ``/history``, ``/fills.csv`` and ``/pnl`` (``reporting``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import StreamingResponse

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.market.service import normalize_symbol
from tradepilot.trading import reporting
from tradepilot.trading.deps import ReadUser
from tradepilot.trading.execution import fill_payload, order_payload
from tradepilot.trading.order_schemas import FillOut
from tradepilot.trading.orders import check_account_filter
from tradepilot.trading.position_schemas import HistoryItem, PnlOut

router = api_router(prefix="/api/trading", tags=["reports"])

_ACCOUNT = {404: {"description": "account_id names no account of yours (account_not_found)"},
            422: {"description": "start after end (invalid_range)"}}
Start = Annotated[datetime | None, Query(description="RFC 3339; at or after (a time without offset is UTC)")]
End = Annotated[datetime | None, Query(description="RFC 3339; before (exclusive)")]
SymbolQuery = Annotated[str | None, Query(max_length=32)]


def _symbol(symbol: str | None) -> str | None:
    return None if symbol is None else normalize_symbol(symbol)


@router.get("/history", response_model=Page[HistoryItem], summary="Closed orders and their fills",
            responses={**_ACCOUNT, 400: {"description": "invalid_cursor"}})
async def history(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    symbol: SymbolQuery = None,
    side: Literal["buy", "sell"] | None = None,
    account_id: uuid.UUID | None = None,
    status_: Annotated[Literal["filled", "canceled", "expired", "rejected"] | None, Query(alias="status")] = None,
    start: Start = None,
    end: End = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[HistoryItem]:
    """Orders that ended (filled, canceled, expired, rejected), newest closed first; `start` /
    `end` bound the time each order closed. Each with its fills (the trades)."""
    start, end = reporting.as_utc(start), reporting.as_utc(end)
    reporting.check_range(start, end)
    await check_account_filter(db, principal.id, account_id)
    query = reporting.HistoryQuery(user_id=principal.id, symbol=_symbol(symbol), side=side, account_id=account_id,
                                   status=status_, start=start, end=end)
    rows, next_cursor = await reporting.history(db, query, limit=limit, cursor=cursor)
    items = [HistoryItem(**order_payload(order), fills=[FillOut.model_validate(fill_payload(f)) for f in fills])
             for order, fills in rows]
    return Page[HistoryItem](items=items, next_cursor=next_cursor)


@router.get("/fills.csv", summary="Your fills as CSV (for taxes)", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}},
                             "description": "One row per fill, oldest first: " + ", ".join(reporting.CSV_COLUMNS)},
                       **_ACCOUNT})
async def fills_csv(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    symbol: SymbolQuery = None,
    account_id: uuid.UUID | None = None,
    start: Start = None,
    end: End = None,
) -> StreamingResponse:
    """Streamed (the export is read a page at a time). Times RFC 3339 UTC; decimals exact, as
    plain text; `realised_pnl` is the fill's gross realised P&L (average cost, 0 for a buy)."""
    start, end = reporting.as_utc(start), reporting.as_utc(end)
    reporting.check_range(start, end)
    await check_account_filter(db, principal.id, account_id)
    await db.close()  # the stream reads with its own short sessions
    query = reporting.FillQuery(user_id=principal.id, account_id=account_id, symbol=_symbol(symbol), start=start,
                                end=end)
    name = "fills" + (f"-{account_id}" if account_id else "") + ".csv"
    return StreamingResponse(reporting.fills_csv(runtime.db, query), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/pnl", response_model=PnlOut, summary="Realised and unrealised P&L, by symbol and by UTC day",
            responses=_ACCOUNT)
async def pnl(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    account_id: uuid.UUID | None = None,
    symbol: SymbolQuery = None,
    start: Start = None,
    end: End = None,
) -> PnlOut:
    """Average-cost method. Realised P&L and fees of the fills in [start, end) — per symbol, per
    UTC day, and in total per quote asset — each fill's realised P&L being recorded when it
    filled; unrealised P&L of the open positions now, at the last trade price. Fees are apart:
    `net_pnl = realised_pnl − fees`. All your accounts unless `account_id`."""
    start, end = reporting.as_utc(start), reporting.as_utc(end)
    reporting.check_range(start, end)
    await check_account_filter(db, principal.id, account_id)
    accounts = [account_id] if account_id is not None else await reporting.user_accounts(db, principal.id)
    query = reporting.FillQuery(user_id=principal.id, account_id=account_id, symbol=_symbol(symbol), start=start,
                                end=end)
    await db.rollback()  # the fills are read in their own short sessions (on SQLite each holds the lock)
    market = runtime.services["market"]
    report = await reporting.pnl(runtime.db, db, query, market.last_price)
    return PnlOut(method=reporting.METHOD, fees_treatment=reporting.FEES_TREATMENT, accounts=accounts, start=start,
                  end=end, as_of=runtime.clock.now(), **report.as_dict())
