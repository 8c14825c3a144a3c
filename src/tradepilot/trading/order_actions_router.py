"""HTTP edge of the rest of the orders API: ``PUT /orders/{id}``, ``POST``/``DELETE /orders/bulk``
and ``POST /panic`` (docs/orders.md). Included before ``order_router`` so that ``/orders/bulk``
is not taken for an order id."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.identity.idempotency import Idempotency
from tradepilot.market.service import normalize_symbol
from tradepilot.trading import order_actions
from tradepilot.trading.deps import TradeUser
from tradepilot.trading.execution import order_payload
from tradepilot.trading.halt import current_halt
from tradepilot.trading.live.bulk_cancel import LiveCancelOutcome, cancel_live_orders
from tradepilot.trading.live.closing import close_live_positions
from tradepilot.trading.live.modify import LiveModify
from tradepilot.trading.order_groups import legs_of
from tradepilot.trading.order_models import Order, OrderStatus
from tradepilot.trading.order_router import Orders, OwnedOrder, order_out
from tradepilot.trading.order_schemas import (
    BulkCancelOut,
    BulkItemOut,
    BulkOrdersIn,
    BulkOrdersOut,
    CancelOutcomeOut,
    OrderModify,
    OrderOut,
    PanicCloseOut,
    PanicIn,
    PanicOut,
)
from tradepilot.trading.panic_hooks import run_panic_hooks

router = api_router(prefix="/api/trading", tags=["orders"])


async def order_with_legs(db: AsyncSession, row: Order) -> OrderOut:
    out = order_out(row)
    if row.group_id is not None:
        out.legs = [order_out(leg) for leg in await legs_of(db, row)]
    return out


@router.put("/orders/{order_id}", response_model=OrderOut, summary="Modify an open order",
            responses={404: {"description": "No such order, or not yours (order_not_found)"},
                       409: {"description": "Final already (order_not_open), or not at the given revision "
                                            "(revision_mismatch)"},
                       422: {"description": "A filter (invalid_tick_size…), the engine's rules (quantity_below_filled, "
                                            "post_only_would_take, sized_by_entry…) or the money (insufficient_funds, "
                                            "insufficient_position)"},
                       503: {"description": "The platform halt is on (trading_halted)"}})
async def modify_order(body: OrderModify, order: OwnedOrder, principal: TradeUser, db: DbSession,
                       orders: Orders) -> OrderOut:
    """Change price, quantity, stop price or trail of an open order: same id, `revision` + 1, the
    reservation adjusted exactly. Idempotent by nature; send `revision` for optimistic concurrency.
    On a live account: cancel-replace on the exchange (409 `order_filled_during_modify` if it filled
    meanwhile, with the fills recorded; docs/exchanges.md)."""
    if order.venue.startswith("live:"):
        await db.commit()  # end the ownership read: nothing is held across the network
        return order_out(await LiveModify(orders.live).modify(order, body))
    row = await order_actions.modify(orders, db, order, body)
    out = order_out(row)
    await db.commit()
    return out


@router.post("/orders/bulk", response_model=BulkOrdersOut, summary="Place several orders",
             responses={422: {"description": "More than 50 orders (batch_too_large); atomic and an order failed "
                                             "(batch_rejected, with every item's result)"},
                        503: {"description": "The platform halt is on (trading_halted)"}})
async def place_orders(idem: Idempotency, body: BulkOrdersIn, principal: TradeUser, db: DbSession,
                       orders: Orders) -> Response:
    """Up to 50 orders, each as `POST /orders` would place it. `atomic: true` places all of them
    in one transaction or none (422 `batch_rejected`); otherwise each succeeds or fails alone.
    Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    results = await order_actions.place_batch(orders, db, principal, list(body.orders), atomic=body.atomic)
    failed = sum(1 for r in results if r.order is None)
    if body.atomic and failed:
        items = [{"index": r.index, "status_code": r.status_code, "error": r.error} if r.order is None else
                 {"index": r.index, "status_code": 424, "error": {
                     "code": "batch_rolled_back", "status": 424, "title": "Failed dependency",
                     "detail": "Not placed: another order of the atomic batch failed."}} for r in results]
        raise Unprocessable(f"{failed} of {len(results)} orders failed; the atomic batch placed nothing.",
                            code="batch_rejected", extra={"results": items})
    out = BulkOrdersOut(atomic=body.atomic, placed=len(results) - failed, failed=failed, results=[
        BulkItemOut(index=r.index, status_code=r.status_code, error=r.error,
                    order=None if r.order is None else await order_with_legs(db, r.order)) for r in results])
    answer = await idem.respond(db, out, status=status.HTTP_200_OK)
    await db.commit()
    for placed in (r.order for r in results if r.order is not None):  # ops/monitoring: orders accepted
        orders.runtime.metrics.orders.labels(placed.type, placed.side).inc()
    return answer


@router.delete("/orders/bulk", response_model=BulkCancelOut, summary="Cancel all your open orders",
               responses={404: {"description": "An account_id that is not yours (account_not_found)"}})
async def cancel_orders(
    principal: TradeUser,
    db: DbSession,
    orders: Orders,
    symbol: Annotated[str | None, Query(max_length=32)] = None,
    account_id: uuid.UUID | None = None,
) -> BulkCancelOut:
    """Cancels every open order of yours (of one symbol, of one account), releasing what they
    reserve; a bracket's or OCO's orders go together. Never touches anyone else's orders. On a
    live account each platform order is cancelled on the exchange (never an external one); those
    it did not cancel — already filled there, or an exchange error — are in `not_canceled`."""
    symbol = None if symbol is None else normalize_symbol(symbol)
    rows = await order_actions.cancel_all(orders, db, principal, account_id=account_id, symbol=symbol)
    await db.commit()  # nothing is held across the network: live orders are cancelled after
    live = await cancel_live_orders(orders, principal, account_id=account_id, symbol=symbol)
    canceled = [r.id for r in rows] + canceled_live(live)
    return BulkCancelOut(canceled=canceled, count=len(canceled), not_canceled=not_canceled_live(live))


def canceled_live(outcomes: list[LiveCancelOutcome]) -> list[uuid.UUID]:
    return [o.order_id for o in outcomes if o.error is None and o.status == OrderStatus.CANCELED]


def not_canceled_live(outcomes: list[LiveCancelOutcome]) -> list[CancelOutcomeOut]:
    return [CancelOutcomeOut(order_id=o.order_id, status=o.status, error=o.error) for o in outcomes
            if o.error is not None or o.status != OrderStatus.CANCELED]


@router.post("/panic", response_model=PanicOut, summary="The panic button",
             responses={404: {"description": "An account_id that is not yours (account_not_found)"}})
async def panic(idem: Idempotency, body: PanicIn, principal: TradeUser, db: DbSession,
                orders: Orders, runtime: RuntimeDep) -> Response:
    """Stops your running strategies, cancels every open order of yours (all accounts, or
    `account_id`'s; on a live account each platform order on the exchange, one by one, never an
    external one), committed first; then, with `close_positions`, sells each long position at
    market (reduce-only; on a live account only the quantity TradePilot's own fills hold, never the user's
    other holdings: `nothing_to_close` when there is none). Works while the
    platform is halted: cancels and reduce-only closes only reduce risk. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    await run_panic_hooks(runtime, db, principal.id)  # running strategies stop first: no new orders from them
    canceled = await order_actions.cancel_all(orders, db, principal, account_id=body.account_id,
                                              reason="canceled_by_user")
    await db.commit()  # the cancels stand whatever happens to the closes
    live = await cancel_live_orders(orders, principal, account_id=body.account_id)
    canceled_ids = [r.id for r in canceled] + canceled_live(live)
    # live positions first: their sells go to the exchange with no transaction of this request open
    live_closes = await close_live_positions(orders, principal, account_id=body.account_id) \
        if body.close_positions else []
    halted = (await current_halt(db)).halted
    closes = []
    if body.close_positions:
        for result in live_closes + await order_actions.close_positions(orders, db, principal,
                                                                        account_id=body.account_id):
            closes.append(PanicCloseOut(account_id=result.account_id, symbol=result.symbol, quantity=result.quantity,
                                        status_code=result.status_code, error=result.error,
                                        order=None if result.order is None else OrderOut.of(
                                            order_payload(result.order))))
    out = PanicOut(canceled=canceled_ids, canceled_count=len(canceled_ids), not_canceled=not_canceled_live(live),
                   closes=closes, trading_halted=halted)
    answer = await idem.respond(db, out, status=status.HTTP_200_OK)
    await db.commit()
    return answer
