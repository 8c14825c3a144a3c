"""HTTP edge of orders and fills: /api/trading/orders, /fills (positions: positions_router)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.deps import CurrentUser
from tradepilot.identity.idempotency import Idempotency
from tradepilot.market.service import normalize_symbol
from tradepilot.trading.deps import ReadUser, TradeUser
from tradepilot.trading.execution import fill_payload, order_payload
from tradepilot.trading.order_models import Order
from tradepilot.trading.order_schemas import FillOut, OrderCreate, OrderEventOut, OrderOut
from tradepilot.trading.orders import OrderService, order_not_found

router = api_router(prefix="/api/trading", tags=["orders"])

StatusFilter = Literal["open", "pending_new", "new", "partially_filled", "filled", "canceled", "expired", "rejected"]
_NOT_FOUND = {404: {"description": "No such order, or not yours (order_not_found)"}}


def get_orders(runtime: RuntimeDep) -> OrderService:
    return runtime.services["orders"]  # type: ignore[no-any-return]


Orders = Annotated[OrderService, Depends(get_orders)]


@ownership_dependency
async def owned_order(order_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> Order:
    """The caller's order; 404 ``order_not_found`` alike for a missing id and another user's order."""
    row = await db.get(Order, order_id)
    if row is None or row.user_id != principal.id:
        raise order_not_found()
    return row


OwnedOrder = Annotated[Order, Depends(owned_order)]


def order_out(row: Order) -> OrderOut:
    return OrderOut.of(order_payload(row))


def _symbol(symbol: str | None) -> str | None:
    return None if symbol is None else normalize_symbol(symbol)


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut, summary="Place an order",
             responses={404: {"description": "Unknown symbol (unknown_symbol) or account (account_not_found)"},
                        409: {"description": "client_order_id already used on the account "
                                             "(duplicate_client_order_id), closed account (account_closed)"},
                        422: {"description": "A filter (invalid_tick_size, invalid_step_size, below_min_notional…), "
                                             "the order's shape (price_required…) or a risk check "
                                             "(insufficient_funds, insufficient_position, open_orders_limit…)"},
                        503: {"description": "No order book / last price yet (market_data_unavailable)"}})
async def place_order(idem: Idempotency, body: OrderCreate, principal: TradeUser, db: DbSession,
                      orders: Orders) -> Response:
    """Place an order on the paper exchange. A marketable order fills at once against the current
    book (201 with its fills settled); the rest rests or waits for its trigger. Accepts
    `Idempotency-Key`; `client_order_id` is unique per account forever.

    On a live account (`account_id` of one) the order goes to the exchange: 201 with the
    exchange's fills, or 202 with the order still `pending_new` when the exchange's answer was
    lost and lookups did not find it yet. Market and limit orders only (docs/exchanges.md)."""
    if idem.replay is not None:
        return idem.replay
    live = await orders.live_account(principal, body.account_id)
    if live is not None:  # a real exchange: recorded, sent once, never lost (trading/live/placement.py)
        async def finish(session: AsyncSession, row: Order, status_code: int) -> Response:
            orders.runtime.metrics.orders.labels(row.type, row.side).inc()  # ops/monitoring: orders accepted
            return await idem.respond(session, order_out(row), status=status_code)

        return await orders.live.place(principal, body, live, finish)  # type: ignore[no-any-return]
    prepared = orders.prepare(body)
    row = await orders.place(db, principal, prepared)
    out = order_out(row)
    if row.group_id is not None:  # a bracket or an OCO: its first order, with the others as legs
        from tradepilot.trading.order_groups import legs_of

        out.legs = [order_out(leg) for leg in await legs_of(db, row)]
    answer = await idem.respond(db, out, status=status.HTTP_201_CREATED)
    await db.commit()
    orders.runtime.metrics.orders.labels(row.type, row.side).inc()  # ops/monitoring: orders accepted
    return answer


@router.get("/orders", response_model=Page[OrderOut], summary="Your orders")
async def list_orders(
    principal: ReadUser,
    db: DbSession,
    orders: Orders,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[StatusFilter | None, Query(alias="status", description="`open`: not final yet")] = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    account_id: uuid.UUID | None = None,
    group_id: Annotated[uuid.UUID | None, Query(description="A bracket's or OCO's orders")] = None,
) -> Page[OrderOut]:
    """Newest first."""
    if account_id is not None:
        await orders.check_account(db, principal.id, account_id)
    rows, next_cursor = await orders.list_orders(db, user_id=principal.id, status=status_, symbol=_symbol(symbol),
                                                 account_id=account_id, limit=limit, cursor=cursor,
                                                 group_id=group_id)
    return Page[OrderOut](items=[order_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderOut, summary="An order", responses=_NOT_FOUND)
async def get_order(order: OwnedOrder, principal: ReadUser) -> OrderOut:
    return order_out(order)


@router.get("/orders/{order_id}/events", response_model=Page[OrderEventOut], summary="An order's history",
            responses=_NOT_FOUND)
async def get_order_events(
    order: OwnedOrder,
    principal: ReadUser,
    db: DbSession,
    orders: Orders,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[OrderEventOut]:
    """Oldest first: received, accepted, fill, triggered, stop_moved, canceled, expired, rejected."""
    rows, next_cursor = await orders.order_events(db, order=order, limit=limit, cursor=cursor)
    return Page[OrderEventOut](items=[OrderEventOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.delete("/orders/{order_id}", response_model=OrderOut, summary="Cancel an order",
               responses={**_NOT_FOUND, 409: {"description": "Already final (order_not_open)"}})
async def cancel_order(order: OwnedOrder, principal: TradeUser, db: DbSession, orders: Orders) -> OrderOut:
    """Cancels an open order and releases what it still reserves. On a live account the
    exchange cancels it first (an order it had filled meanwhile is recorded as filled)."""
    if order.venue.startswith("live:"):
        await db.commit()  # end the ownership read: nothing is held across the network
        return order_out(await orders.live.cancel(order))
    row = await orders.cancel(db, order)
    out = order_out(row)
    await db.commit()
    return out


@router.get("/fills", response_model=Page[FillOut], summary="Your fills")
async def list_fills(
    principal: ReadUser,
    db: DbSession,
    orders: Orders,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    account_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
) -> Page[FillOut]:
    """Newest first."""
    if account_id is not None:
        await orders.check_account(db, principal.id, account_id)
    rows, next_cursor = await orders.list_fills(db, user_id=principal.id, symbol=_symbol(symbol),
                                                account_id=account_id, order_id=order_id, limit=limit, cursor=cursor)
    return Page[FillOut](items=[FillOut.model_validate(fill_payload(r)) for r in rows], next_cursor=next_cursor)

