"""Modifying an order on a live account: cancel-replace (docs/exchanges.md, "Modify").

Binance spot cannot change a resting order in place, so ``PUT /orders/{id}`` on a live order is

1. **Check and record the intent** (one transaction under the account's lock): the order is
   open, ours, not partly filled, at the revision given; the new amounts pass the exchange's
   filters; the ledger can hold the new reservation. A ``replace_requested`` event is written.
2. **Cancel** the current revision on the exchange by its client id (no transaction open). If
   the exchange had filled any of it meanwhile, those fills are recorded, the order ends there
   (filled, or cancelled with its fills) and the modify is refused: 409
   ``order_filled_during_modify`` — a replacement would trade what the user no longer wants to.
3. **Switch** (one transaction): revision + 1, the new amounts, the reservation adjusted through
   the ledger, status ``pending_new`` — the same platform order id.
4. **Place** the replacement once under the new client id ``tp-<id hex><revision>``, then record
   its outcome exactly as a new order's (``LivePlacement``): looked up by that id when the answer
   is lost, never sent twice.

A crash between the steps leaves nothing for anybody to guess: after 2, the old revision is
cancelled on the exchange and still open here — reconciliation records it ``closed_on_exchange``
once the grace age has passed (before, it leaves that cancel to the modify in flight, whose
last event is ``replace_requested``: a run or a user-data stream update must not end the order
the modify is about to switch); after 3, the order is ``pending_new`` under its new client id
— reconciliation adopts it if the exchange has it, or ends it ``rejected`` after the grace age.
The exchange never holds two live orders for one platform order: the replacement is sent only
once the cancel is confirmed, and earlier revisions' exchange orders are ignored by
reconciliation.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tradepilot.core.errors import Conflict, Unprocessable
from tradepilot.trading import ledger
from tradepilot.trading.engine.orders import STOP_TYPES, OrderType
from tradepilot.trading.engine.validation import check_order
from tradepilot.trading.execution import OrderWriter, order_reference, sub
from tradepilot.trading.filters import OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.live.answers import VenueOrder, VenueTrade
from tradepilot.trading.live.client_ids import MAX_LIVE_REVISION, client_order_id, row_client_id
from tradepilot.trading.live.errors import (
    ExchangeAuthError,
    ExchangeBadRequest,
    ExchangeError,
    ExchangeRateLimited,
)
from tradepilot.trading.live.placement import emulated_waiting, refuse_external
from tradepilot.trading.order_models import Order, OrderStatus
from tradepilot.trading.order_schemas import OrderCreate, OrderModify

if TYPE_CHECKING:
    from tradepilot.trading.live.placement import LivePlacement

ZERO = Decimal(0)


def _not_open(row: Order) -> Conflict:
    return Conflict(f"The order is already {row.status}.", code="order_not_open", extra={"status": row.status})


class LiveModify:
    """``PUT /orders/{id}`` for live orders, through the placement's recording steps."""

    def __init__(self, placement: LivePlacement) -> None:
        self.placement = placement
        self.service = placement.service
        self.runtime = placement.runtime
        self.clock = placement.clock

    async def modify(self, row: Order, body: OrderModify) -> Order:
        changes = {name: getattr(body, name) for name in ("price", "quantity", "stop_price")
                   if getattr(body, name) is not None}
        if body.trail_amount is not None or body.trail_percent is not None:
            raise Unprocessable("Trailing stops are not available on live accounts.", code="order_type_not_supported")
        if not changes:
            raise Unprocessable("Give price, quantity or stop_price.", code="nothing_to_modify")
        refuse_external(row)
        if row.type == OrderType.TRAILING_STOP:
            raise Unprocessable("An emulated trailing stop cannot be modified on a live account: cancel it and "
                                "place a new one.", code="order_type_not_supported")
        if emulated_waiting(row):  # a position's exit, kept by the platform
            raise Unprocessable("A position's stop-loss or take-profit is changed through the position: "
                                "PUT /api/trading/positions/{id}/stop-loss or /take-profit.",
                                code="order_type_not_supported")
        if "price" in changes and row.type in (OrderType.MARKET, OrderType.STOP, OrderType.TAKE_PROFIT):
            raise Unprocessable(f"A {row.type} order has no limit price to change.", code="invalid_modify")
        if "stop_price" in changes and row.type not in STOP_TYPES:
            raise Unprocessable(f"A {row.type} order has no stop price.", code="invalid_modify")
        account = await self.placement.account_of(row.account_id)
        async with live_venues(self.runtime).open(account) as exchange:
            instrument = await exchange.instrument(row.symbol)
            quantity = changes.get("quantity", row.quantity)
            price, stop = changes.get("price", row.price), changes.get("stop_price", row.stop_price)
            try:
                shape = OrderCreate(symbol=row.symbol, side=row.side, type=row.type,  # type: ignore[arg-type]
                                    quantity=quantity, price=price, stop_price=stop,
                                    time_in_force=row.time_in_force, account_id=row.account_id)  # type: ignore[arg-type]
            except ValidationError as exc:
                raise Unprocessable("; ".join(str(e.get("msg")) for e in exc.errors()),
                                    code="validation_error") from None
            problem = check_order(self.service._engine_order(shape, row.symbol, "-", "-"))
            if problem is not None:
                raise Unprocessable(problem[1], code=problem[0])
            check_filters(instrument, OrderAmounts(quantity=quantity, price=price, stop_price=stop,
                                                   quote_quantity=None), reference_price=None)
            full, _ = self.service._reservation(self.service._engine_order(shape, row.symbol, "-", "-"), [])
            revision = await self._check(row.id, body.revision, full, changes)
            current = await self._current(row.id)
            answer, trades = await self.placement.ask_cancel(exchange, current)
            if answer is None or answer.filled > 0 or answer.status == "filled":
                await self.placement.record_cancel(row.id, answer, trades, reason="canceled_for_modify")
                return self._refuse_filled(await self._current(row.id), answer)
            await self._switch(row.id, revision, full, changes)
            cid = client_order_id(row.id, revision)
            found: VenueOrder | None
            try:
                found = await exchange.create_order(
                    symbol=row.symbol, type=row.type, side=row.side, quantity=quantity, price=price,
                    client_order_id=cid, time_in_force=row.time_in_force, stop_price=stop)
            except (ExchangeBadRequest, ExchangeAuthError, ExchangeRateLimited) as exc:
                async with self.runtime.db.transaction() as session:
                    await self.placement._reject(session, row.id, exc)
                exc.extra = {**exc.extra, "order_id": str(row.id)}
                raise
            except ExchangeError:
                found = await self.placement._look_up(exchange, row.symbol, cid)
            placed: list[VenueTrade] = list(found.trades) if found is not None else []
            if found is not None and found.filled > 0 and not placed:
                placed = await self.placement._trades_of(exchange, row.symbol, found)
        async with self.runtime.db.transaction() as session:
            return await self.placement._write_outcome(session, row.id, found, placed)

    async def _current(self, order_id: uuid.UUID) -> Order:
        async with self.runtime.db.read() as session:
            current = await session.get(Order, order_id, populate_existing=True)
            assert current is not None
            session.expunge(current)
            return current

    async def _check(self, order_id: uuid.UUID, revision: int | None, full: Decimal,
                     changes: dict[str, Any]) -> int:
        """Step 1: what may be replaced, and the intent recorded; returns the new revision."""
        async with self.runtime.db.transaction() as session:
            await ensure_not_halted(session)
            account, current = await self.placement._locked_order(session, order_id)
            if not current.is_open:
                raise _not_open(current)
            if revision is not None and revision != current.revision:
                raise Conflict(f"The order is at revision {current.revision}, not {revision}.",
                               code="revision_mismatch", extra={"revision": current.revision})
            if current.status == OrderStatus.PENDING_NEW:
                raise Conflict("The exchange's answer to this order is not known yet; modify it once it is.",
                               code="order_pending")
            if current.filled_quantity > 0:
                raise Conflict("The order is partly filled: on a live account it cannot be replaced "
                               "(cancel it and place a new one).", code="order_partially_filled",
                               extra={"filled_quantity": str(current.filled_quantity)})
            if current.revision >= MAX_LIVE_REVISION:
                raise Unprocessable(f"A live order can be modified at most {MAX_LIVE_REVISION} times.",
                                    code="too_many_modifications")
            more = sub(full, current.reserved)
            if more > 0:
                free = next((b.free for b in await ledger.get_balances(session, account.id)
                             if b.asset == current.reserved_asset), ZERO)
                if free < more:
                    raise Unprocessable(f"The new order needs {more} {current.reserved_asset} more than the old one "
                                        f"holds; {free} is free.", code="insufficient_funds")
            new = current.revision + 1
            writer = OrderWriter(session, account, self.clock.now())
            current.updated_at = writer.now  # reconciliation leaves the cancel to this modify for the grace age
            await writer.add_event(current, "replace_requested", current.status, {
                "revision": new, "exchange_client_order_id": client_order_id(current.id, new),
                "replaces": row_client_id(current), **changes})
            return new

    async def _switch(self, order_id: uuid.UUID, revision: int, full: Decimal, changes: dict[str, Any]) -> None:
        """Step 3: the order at its new revision, ``pending_new`` until the replacement's answer."""
        async with self.runtime.db.transaction() as session:
            account, current = await self.placement._locked_order(session, order_id)
            if not current.is_open or current.revision != revision - 1:
                raise _not_open(current)  # reconciliation ended it meanwhile: nothing is sent
            now = self.clock.now()
            writer = OrderWriter(session, account, now)
            for name, value in changes.items():
                setattr(current, name, value)
            current.revision, current.exchange_order_id = revision, None
            current.status, current.accepted_at = OrderStatus.PENDING_NEW, None
            if full > current.reserved:
                await writer.reserve(current, sub(full, current.reserved))
            elif full < current.reserved:
                less = sub(current.reserved, full)
                await ledger.release(session, account, current.reserved_asset, less, now=now,
                                     reference=order_reference(current))
                current.reserved = full
            await writer.add_event(current, "modified", OrderStatus.PENDING_NEW, {
                "revision": revision, "price": current.price, "quantity": current.quantity,
                "stop_price": current.stop_price, "exchange_client_order_id": client_order_id(current.id, revision)})
            await writer.finish(current)

    @staticmethod
    def _refuse_filled(current: Order, answer: VenueOrder | None) -> Order:
        if answer is None:
            raise Conflict("The exchange has no order by this order's client id: it was not replaced; the next "
                           "reconciliation settles it.", code="order_not_on_exchange")
        raise Conflict(f"The exchange filled {answer.filled} of the order before it could be replaced: the fills "
                       f"are recorded and the order is {current.status}; nothing new was placed.",
                       code="order_filled_during_modify",
                       extra={"status": current.status, "filled_quantity": str(current.filled_quantity)})
