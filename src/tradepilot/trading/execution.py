"""From matching-engine events to the database: one order's events in the caller's transaction.

Used by the order service (an order's taker fills at placement) and by the matching owner
(resting fills, triggers, expiries). For every engine event of one order it writes the
order's history (``OrderEvent``), settles each fill through the ledger (the reservation pays
the fill and a quote fee; a sale's proceeds go to ``free``), records the ``Fill`` and the
position, and, once the order is final, releases what is still reserved for it. Outbox
events follow the rows: ``fill.created`` per fill, ``position.updated`` and ``order.updated``
once per transaction (after the ledger's own ``balance.updated`` events).

The caller holds the account's lock (``ledger.lock_account``) and has checked that the order
is still open at the revision the engine knows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.events import Topics
from tradepilot.core.outbox import Pending, emit, emit_many, jsonable
from tradepilot.trading import ledger
from tradepilot.trading.engine import (
    EngineEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderModified,
    OrderRejected,
    OrderUpdated,
    StopMoved,
    Triggered,
)
from tradepilot.trading.engine import Fill as EngineFill
from tradepilot.trading.engine import LegRole
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.amounts import EXACT as ENGINE_EXACT
from tradepilot.trading.engine.amounts import ROUND
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderEvent, OrderStatus, Position
from tradepilot.trading.positions import position_for_update, position_payload, record_fill

ZERO = Decimal(0)
SCALE = Decimal("1e-18")
ORDERS_KIND, FILLS_KIND, POSITIONS_KIND = "orders", "fills", "positions"  # topics user.<id>.<kind>
ORDER_UPDATED, FILL_CREATED, POSITION_UPDATED = "order.updated", "fill.created", "position.updated"


def ceil18(value: Decimal) -> Decimal:
    """Rounded up at the 18th decimal (a reservation never falls short by rounding)."""
    return value.quantize(SCALE, rounding=ROUND_CEILING, context=ROUND) if value.as_tuple().exponent < -18 \
        else value  # type: ignore[operator]


def mul(a: Decimal, b: Decimal) -> Decimal:
    return ENGINE_EXACT.multiply(a, b)


def add(a: Decimal, b: Decimal) -> Decimal:
    return ENGINE_EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return ENGINE_EXACT.subtract(a, b)


# --- rows and engine orders --------------------------------------------------------------------

def to_engine(row: Order) -> EngineOrder:
    """The engine's view of a persisted order, with its working state (to re-arm it)."""
    return EngineOrder(
        id=str(row.id), account_id=str(row.account_id), symbol=row.symbol, side=row.side,  # type: ignore[arg-type]
        type=row.type, quantity=row.quantity, quote_quantity=row.quote_quantity,  # type: ignore[arg-type]
        price=row.price, stop_price=row.stop_price, trail_amount=row.trail_amount,
        trail_percent=row.trail_percent, time_in_force=row.time_in_force,  # type: ignore[arg-type]
        post_only=row.post_only, status=row.status,  # type: ignore[arg-type]
        filled_quantity=row.filled_quantity, filled_notional=row.filled_notional, fees=row.fees,
        revision=row.revision, seq=row.seq, fill_count=row.fill_count, triggered=row.triggered,
        water_mark=row.water_mark, accepted_at=row.accepted_at, expires_at=row.expires_at,
        group_id=None if row.group_id is None else str(row.group_id), role=engine_role(row))


def engine_role(row: Order) -> LegRole | None:
    """The engine's role of a grouped order: both orders of an OCO are plain legs there."""
    if row.group_role is None:
        return None
    return LegRole.LEG if row.group_kind == "oco" else LegRole(row.group_role)


def copy_state(row: Order, order: EngineOrder, now: datetime) -> None:
    """The engine's working state of ``order`` onto its row."""
    row.status = order.status.value
    row.quantity = order.quantity  # a modify, or a bracket exit sized by its entry's fills
    row.price = order.price
    row.trail_amount, row.trail_percent = order.trail_amount, order.trail_percent
    row.filled_quantity = order.filled_quantity
    row.filled_notional = order.filled_notional
    row.average_fill_price = order.average_price
    row.fees = order.fees
    row.seq = order.seq
    row.fill_count = order.fill_count
    row.triggered = order.triggered
    row.water_mark = order.water_mark
    row.stop_price = order.stop_price
    row.accepted_at = order.accepted_at
    row.expires_at = order.expires_at
    row.updated_at = now
    if row.status in OrderStatus.FINAL and row.closed_at is None:
        row.closed_at = now


def order_payload(row: Order) -> dict[str, Any]:
    """An order as the API and the ``order.updated`` event show it."""
    return {
        "id": row.id, "client_order_id": row.client_order_id, "account_id": row.account_id, "symbol": row.symbol,
        "side": row.side, "type": row.type, "time_in_force": row.time_in_force, "quantity": row.quantity,
        "quote_quantity": row.quote_quantity, "price": row.price, "stop_price": row.stop_price,
        "trail_amount": row.trail_amount, "trail_percent": row.trail_percent, "post_only": row.post_only,
        "reduce_only": row.reduce_only, "status": row.status, "filled_quantity": row.filled_quantity,
        "filled_quote_quantity": row.filled_notional, "average_fill_price": row.average_fill_price,
        "fees": row.fees, "fee_asset": row.fee_asset, "reserved": row.reserved,
        "reserved_asset": row.reserved_asset, "revision": row.revision, "reject_code": row.reject_code,
        "reject_reason": row.reject_reason, "cancel_reason": row.cancel_reason, "venue": row.venue,
        "group_id": row.group_id, "group_kind": row.group_kind, "group_role": row.group_role,
        "source": row.source or "platform", "strategy_id": row.strategy_id, "strategy_run_id": row.strategy_run_id,
        "expires_at": row.expires_at, "created_at": row.created_at,
        "updated_at": row.updated_at, "closed_at": row.closed_at}


def fill_payload(fill: Fill) -> dict[str, Any]:
    return {"id": fill.id, "order_id": fill.order_id, "account_id": fill.account_id, "symbol": fill.symbol,
            "side": fill.side, "price": fill.price, "quantity": fill.quantity, "quote_quantity": fill.quote_quantity,
            "fee": fill.fee, "fee_asset": fill.fee_asset, "liquidity": fill.liquidity, "trade_id": fill.trade_id,
            "market_trade_id": fill.market_trade_id, "realised_pnl": fill.realised_pnl,
            "source": fill.source or "platform", "created_at": fill.created_at}


PositionListener = Callable[["OrderWriter", Order, Position], Awaitable[None]]
POSITION_LISTENERS: list[PositionListener] = []


def on_position_change(listener: PositionListener) -> PositionListener:
    """Register ``listener(writer, order, position)``: called in the order's transaction, after
    the order's fills changed ``position`` (the account is locked, everything is flushed)."""
    if listener not in POSITION_LISTENERS:
        POSITION_LISTENERS.append(listener)
    return listener


def order_reference(row: Order) -> ledger.Reference:
    return ledger.Reference("order", row.id.hex)


# --- writing one order's events ------------------------------------------------------------------

class OrderWriter:
    """Persists engine events of orders of one (locked) account in the caller's transaction.

    ``batched`` (the order service's placement): the writer knows the account's balances
    (``known``, read under the lock by the caller) and writes with as few statements as it
    can — no re-read of the account or the balances in the ledger, the ledger transactions,
    postings, order row, order events and fill left to ONE flush per finished order, and the
    outbox events of the whole operation (balances, fills, position, order, in the order they
    happened) written by one ``emit_many`` when the outermost :meth:`finish` ends. ``fresh``:
    ids of orders created in this transaction (their fills' dedupe keys cannot exist yet).
    """

    def __init__(self, session: AsyncSession, account: TradingAccount, now: datetime, *,
                 batched: bool = False, known: dict[str, ledger.KnownBalance] | None = None) -> None:
        self.session = session
        self.account = account
        self.now = now
        self._positions: dict[str, Position] = {}
        self.batched = batched
        self.known = known if known is not None else ({} if batched else None)
        self.fresh: set[uuid.UUID] = set()
        self.events: list[Pending] = []
        self._late: list[object] = []  # rows referencing rows of the next flush (batched)
        self._depth = 0

    def _ledger_options(self) -> dict[str, Any]:
        if not self.batched:
            return {}
        return {"locked_account": self.account, "known": self.known, "events": self.events,
                "late_rows": self._late}

    async def emit(self, *, topic: str, type: str, user_id: uuid.UUID, payload: dict[str, Any]) -> None:
        """An outbox event of this operation: now, or with the others at the end (``batched``)."""
        if self.batched:
            self.events.append(Pending(topic=topic, type=type, user_id=user_id, payload=payload))
        else:
            await emit(self.session, topic=topic, type=type, user_id=user_id, payload=payload)

    async def add_event(self, row: Order, type_: str, status: str, detail: dict[str, Any] | None = None) -> None:
        row.event_seq += 1
        self.session.add(OrderEvent(order_id=row.id, seq=row.event_seq, type=type_, status=status,
                                    detail=jsonable(detail or {}), created_at=self.now))

    async def reserve(self, row: Order, amount: Decimal) -> None:
        """Lock ``amount`` more of the order's reserved asset (422 ``insufficient_funds``)."""
        if amount <= 0:
            return
        await ledger.reserve(self.session, self.account, row.reserved_asset, amount, now=self.now,
                             reference=order_reference(row), **self._ledger_options())
        row.reserved = add(row.reserved, amount)

    async def apply(self, row: Order, order: EngineOrder, events: Sequence[EngineEvent]) -> None:
        """Write ``events`` (all of them ``order``'s) and the order's resulting state."""
        status = row.status
        fill: EngineFill | None = None
        for event in events:
            if isinstance(event, EngineFill):
                await self._settle(row, event)
                fill = event
            elif isinstance(event, OrderUpdated):
                status = event.status.value
                if fill is not None:
                    await self.add_event(row, "fill", status, {
                        "trade_id": fill.trade_id, "price": fill.price, "quantity": fill.quantity,
                        "fee": fill.fee, "liquidity": fill.liquidity.value, "market_trade_id": fill.market_trade_id,
                        "filled_quantity": event.filled_quantity, "remaining_quantity": event.remaining_quantity})
                    fill = None
                else:
                    await self.add_event(row, "updated", status, {"previous_status": event.previous_status.value,
                                                                  "quantity": order.quantity})
            elif isinstance(event, OrderAccepted):
                status = event.status.value
                await self.add_event(row, "accepted", status, {"seq": event.seq})
            elif isinstance(event, Triggered):
                await self.add_event(row, "triggered", status, {
                    "trigger_price": event.trigger_price, "trade_price": event.trade_price,
                    "market_trade_id": event.market_trade_id})
            elif isinstance(event, StopMoved):
                await self.add_event(row, "stop_moved", status, {"water_mark": event.water_mark,
                                                                 "stop_price": event.stop_price})
            elif isinstance(event, OrderCanceled):
                status = OrderStatus.CANCELED
                row.cancel_reason = event.reason
                await self.add_event(row, "canceled", status, {"reason": event.reason,
                                                               "filled_quantity": event.filled_quantity})
            elif isinstance(event, OrderExpired):
                status = OrderStatus.EXPIRED
                await self.add_event(row, "expired", status, {"filled_quantity": event.filled_quantity})
            elif isinstance(event, OrderRejected):
                status = OrderStatus.REJECTED
                row.reject_code, row.reject_reason = event.code, event.detail[:300]
                await self.add_event(row, "rejected", status, {"code": event.code, "detail": event.detail})
            elif isinstance(event, OrderModified):
                row.revision = event.revision
                await self.add_event(row, "modified", status, {
                    "revision": event.revision, "price": event.price, "quantity": event.quantity,
                    "stop_price": event.stop_price, "lost_priority": event.lost_priority})
        copy_state(row, order, self.now)
        await self.finish(row)

    async def finish(self, row: Order) -> None:
        """Release what a final order still holds, then announce the order and its position."""
        self._depth += 1
        try:
            if row.status in OrderStatus.FINAL and row.reserved > 0:
                await ledger.release(self.session, self.account, row.reserved_asset, row.reserved, now=self.now,
                                     reference=order_reference(row), **self._ledger_options())
                row.reserved = ZERO
            row.updated_at = self.now
            await self.session.flush()
            if self._late:  # postings and fills: after the transactions and orders they reference
                self.session.add_all(self._late)
                self._late.clear()
                await self.session.flush()
            position = self._positions.pop(row.symbol, None)
            if position is not None:
                await self.emit(topic=Topics.user(row.user_id, POSITIONS_KIND), type=POSITION_UPDATED,
                                user_id=row.user_id, payload={"position": position_payload(position)})
                for listener in POSITION_LISTENERS:  # e.g. the position's stop-loss / take-profit follow it
                    await listener(self, row, position)
            await self.emit(topic=Topics.user(row.user_id, ORDERS_KIND), type=ORDER_UPDATED,
                            user_id=row.user_id, payload={"order": order_payload(row)})
        finally:
            self._depth -= 1
        if self._depth == 0:
            await self.flush_events()

    async def flush_events(self) -> None:
        """Write what the writer holds back (``batched``): the changed balances (one UPDATE per
        asset), then the events collected so far (one sequence bump, one insert)."""
        if self.batched and self.known:
            await ledger.write_known(self.session, self.account.id, self.known, now=self.now)
        if self.events:
            pending, self.events[:] = list(self.events), []
            await emit_many(self.session, pending)

    async def close(self, row: Order, status: str, *, reason: str, event_type: str | None = None) -> None:
        """End an open order outside the engine (a user's cancel, a failed settlement)."""
        row.status = status
        if status == OrderStatus.CANCELED:
            row.cancel_reason = reason
        row.closed_at = self.now
        await self.add_event(row, event_type or status, status, {"reason": reason,
                                                                 "filled_quantity": row.filled_quantity})
        await self.finish(row)

    async def _settle(self, row: Order, fill: EngineFill) -> None:
        notional = mul(fill.price, fill.quantity)
        if row.side == "buy":
            pay_asset, pay, receive_asset, receive = row.quote_asset, notional, row.base_asset, fill.quantity
        else:
            pay_asset, pay, receive_asset, receive = row.base_asset, fill.quantity, row.quote_asset, notional
        # a fee in the paid asset comes out of the reservation too (paper: a buy's quote fee); in
        # the received asset out of the proceeds; in a third asset (a live venue's BNB) from free
        needed = add(pay, fill.fee) if fill.fee_currency == pay_asset else pay
        if needed > row.reserved:  # a fill the reservation cannot cover (a stop that gapped): top it up
            await self.reserve(row, sub(needed, row.reserved))
        options = self._ledger_options()
        if self.batched and row.id in self.fresh:
            options["check_dedupe"] = False  # the order is new: no earlier transaction has this key
        await ledger.settle_fill(self.session, self.account, pay_asset=pay_asset, pay_amount=pay,
                                 receive_asset=receive_asset, receive_amount=receive, fee_asset=fill.fee_currency,
                                 fee_amount=fill.fee, now=self.now, reference=order_reference(row),
                                 dedupe_key=f"fill:{fill.trade_id}", **options)
        row.reserved = sub(row.reserved, needed)
        record = Fill(id=uuid.uuid4(), order_id=row.id, account_id=row.account_id, user_id=row.user_id,
                      symbol=row.symbol, side=row.side, price=fill.price, quantity=fill.quantity,
                      quote_quantity=notional, fee=fill.fee, fee_asset=fill.fee_currency,
                      liquidity=fill.liquidity.value, trade_id=fill.trade_id, market_trade_id=fill.market_trade_id,
                      source=row.source or "platform", created_at=self.now)
        if self.batched:
            self._late.append(record)
        else:
            self.session.add(record)
        position = self._positions.get(row.symbol)
        if position is None:
            position = self._positions[row.symbol] = await position_for_update(
                self.session, account_id=row.account_id, user_id=row.user_id, symbol=row.symbol,
                base=row.base_asset, quote=row.quote_asset, now=self.now)
        # a position's fees are in its quote asset; a fee in another asset stays on the fill only
        record.realised_pnl = record_fill(position, side=row.side, price=fill.price, quantity=fill.quantity,
                                          fee=fill.fee if fill.fee_currency == row.quote_asset else ZERO,
                                          now=self.now)
        await self.emit(topic=Topics.user(row.user_id, FILLS_KIND), type=FILL_CREATED,
                        user_id=row.user_id, payload={"fill": fill_payload(record)})


def events_by_order(events: Iterable[EngineEvent]) -> dict[str, list[EngineEvent]]:
    """One engine call's events per order, each order's in the order they happened."""
    out: dict[str, list[EngineEvent]] = {}
    for event in events:
        out.setdefault(event.order_id, []).append(event)
    return out
