"""Positions: closing them at market, and their server-side stop-loss and take-profit.

**Closing** places a reduce-only market sell through ``OrderService.place`` — the same checks,
reservation, walk of the book, settlement and events as any order.

**Exits** are orders too: a stop-loss is a reduce-only ``stop`` sell (fires on a trade at or
below its stop price, then sells at market), a take-profit a reduce-only ``take_profit`` sell
(fires at or above its price, then sells at market) or, on request, a reduce-only ``limit``
sell resting at its price. Being orders, the matching owner arms them and re-arms them after
a restart; ``PositionExit`` links each to its position and role.

Rules (docs/orders.md, "Exits"):

* An exit covers the whole position: its quantity is the position's quantity. Setting one
  again replaces the previous order (canceled ``exit_replaced``); setting the same values
  again changes nothing.
* Exits reserve nothing: the stop-loss and the take-profit protect the same coins, and only
  one of them can ever fire. They sell from the free holding when they fire (the sell's
  reservation is taken at the fill, as a stop that gaps tops up its own); so setting one
  needs the position's quantity free (422 ``insufficient_position`` otherwise).
* They follow the position, in the transaction of every fill that changes it (``follow``):
  flat → the exits are canceled (``position_closed``); any other quantity → each exit whose
  remaining quantity differs is replaced by one of the position's quantity, same trigger
  (the old one canceled ``exit_resized``; a resting limit exit loses its time priority). The
  exit whose own fill is being written is left alone (its remaining shrinks with the position).

**Live accounts.** Exits are kept by the platform (``live/emulation.py``): accepted here, never
sent, watched against the exchange's best bid by the account's reconciliation owner, and sent as
one market sell when they fire. Only ``stop`` / ``take_profit`` exits (a resting ``limit`` take-
profit would lock the coins the stop-loss protects). The exchange's instrument and book are read
before the account is locked, so no lock is held across the network; an exit whose sell is in
flight on the exchange cannot be replaced or removed (409 ``exit_in_flight``) — its fill ends it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, Unprocessable
from tradepilot.core.money import EXACT, to_plain_string
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.market.types import Instrument
from tradepilot.trading import ledger
from tradepilot.trading.engine import MatchingEngine
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import OrderType
from tradepilot.trading.execution import OrderWriter, on_position_change
from tradepilot.trading.filters import OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.live.accounts import detached_live_account, live_venues
from tradepilot.trading.live.client_ids import live_venue_name
from tradepilot.trading.live.placement import emulated_waiting, unsupported
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Order, OrderStatus, Position
from tradepilot.trading.order_schemas import OrderCreate
from tradepilot.trading.orders import count_open_orders_of_user
from tradepilot.trading.position_models import ExitKind, PositionExit

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime
    from tradepilot.trading.orders import OrderService

ZERO = Decimal(0)
_OPEN = tuple(OrderStatus.OPEN)
STOP_LOSS_TYPES = frozenset({OrderType.STOP.value})
TAKE_PROFIT_TYPES = frozenset({OrderType.TAKE_PROFIT.value, OrderType.LIMIT.value})


# --- errors ------------------------------------------------------------------------------------

def position_not_found() -> NotFound:
    return NotFound("Position not found.", code="position_not_found")


class PositionNotOpen(Conflict):
    code, title = "position_not_open", "Position not open"

    def __init__(self) -> None:
        super().__init__("The position is flat: there is nothing to close or protect.")


class ExitInFlight(Conflict):
    code, title = "exit_in_flight", "Exit in flight"

    def __init__(self) -> None:
        super().__init__("The exit has fired and its sell is on the exchange: it ends with that sell's fill.")


@dataclass(frozen=True, slots=True)
class LiveQuote:
    """A live account's instrument and best bid, read from its exchange before any lock."""

    instrument: Instrument
    best_bid: Decimal | None


def _s(value: Decimal) -> str:
    return to_plain_string(value)


def _priority(now: datetime) -> int:
    """Time priority, as the order service gives it: microseconds since the epoch."""
    return int(now.timestamp() * 1_000_000)


# --- reading -----------------------------------------------------------------------------------

async def open_exits(session: AsyncSession, position_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Order]]:
    """The exits in force: {position id: {kind: its open order}}."""
    if not position_ids:
        return {}
    rows = await session.execute(
        select(PositionExit.position_id, PositionExit.kind, Order)
        .join(Order, Order.id == PositionExit.order_id)
        .where(PositionExit.position_id.in_(position_ids), Order.status.in_(_OPEN)))
    out: dict[uuid.UUID, dict[str, Order]] = {}
    for position_id, kind, order in rows:
        out.setdefault(position_id, {})[kind] = order
    return out


async def _lock_position(session: AsyncSession, position_id: uuid.UUID) -> tuple[TradingAccount, Position]:
    """The position's account locked (every writer of its positions and orders takes that lock),
    then the position re-read."""
    account_id = await session.scalar(select(Position.account_id).where(Position.id == position_id))
    if account_id is None:
        raise position_not_found()
    account = await ledger.lock_account(session, account_id)
    position = await session.scalar(select(Position).where(Position.id == position_id)
                                    .execution_options(populate_existing=True))
    if position is None:
        raise position_not_found()
    return account, position


async def _link(session: AsyncSession, position_id: uuid.UUID, kind: str) -> tuple[PositionExit | None, Order | None]:
    link = await session.scalar(select(PositionExit).where(PositionExit.position_id == position_id,
                                                           PositionExit.kind == kind))
    if link is None:
        return None, None
    order = await session.scalar(select(Order).where(Order.id == link.order_id)
                                 .execution_options(populate_existing=True))
    return link, (order if order is not None and order.is_open else None)


def _remaining(order: Order) -> Decimal:
    return EXACT.subtract(order.quantity or ZERO, order.filled_quantity)


# --- the service -------------------------------------------------------------------------------

class PositionService:
    """One per process (``runtime.services["positions"]``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def orders(self) -> OrderService:
        return self.runtime.services["orders"]  # type: ignore[no-any-return]

    @property
    def market(self) -> MarketService:
        return self.runtime.services["market"]  # type: ignore[no-any-return]

    # -- closing -------------------------------------------------------------------------

    async def close(self, session: AsyncSession, principal: AuthUser, *, account_id: uuid.UUID, symbol: str,
                    held: Decimal, quantity: Decimal | None = None, client_order_id: str | None = None) -> Order:
        """Sell ``quantity`` (default: all ``held``) at market, reduce-only, in the caller's
        transaction (never commits). The exits follow in the same transaction."""
        if held <= 0:
            raise PositionNotOpen()
        quantity = held if quantity is None else quantity
        if quantity > held:
            raise Unprocessable(f"The position holds {_s(held)}; {_s(quantity)} cannot be closed.",
                                code="quantity_exceeds_position", extra={"position": _s(held), "requested": _s(quantity)})
        body = OrderCreate.model_validate({
            "symbol": symbol, "side": "sell", "type": "market", "quantity": quantity, "reduce_only": True,
            "account_id": account_id, "client_order_id": client_order_id})
        orders = self.orders
        return await orders.place(session, principal, orders.prepare(body))

    # -- exits ---------------------------------------------------------------------------

    async def set_exit(self, session: AsyncSession, principal: AuthUser, position_id: uuid.UUID, kind: str, *,
                       order_type: str, trigger: Decimal) -> Order:
        """Set (or replace) the position's stop-loss / take-profit; returns its order. Never commits.
        On a live account the caller's transaction is ended before the exchange is read (it must
        hold no writes yet): objects it loaded are expired."""
        assert kind in ExitKind.ALL
        assert order_type in (STOP_LOSS_TYPES if kind == ExitKind.STOP_LOSS else TAKE_PROFIT_TYPES)
        limit = order_type == OrderType.LIMIT
        quote = await self._live_quote(session, position_id)
        if quote is not None and limit:
            raise unsupported("A limit take-profit is not available on live accounts (it would lock the coins the "
                              "stop-loss protects): use type take_profit.")
        now = self.runtime.clock.now()
        await ensure_not_halted(session)
        account, position = await _lock_position(session, position_id)
        if not account.is_active:
            raise ledger.AccountClosed()
        if position.quantity <= 0:
            raise PositionNotOpen()
        instrument = self.market.instrument(position.symbol) if quote is None else quote.instrument
        quantity = _floor_to_step(position.quantity, instrument.step_size)
        field = "price" if kind == ExitKind.TAKE_PROFIT else "stop_price"
        amounts = OrderAmounts(quantity=quantity, price=trigger if limit else None,
                               stop_price=None if limit else trigger)
        check_filters(instrument, amounts, reference_price=None)
        if quote is None:
            self._check_side_of_market(kind, field, trigger, position.symbol, limit=limit)
        else:
            _check_side_of_book(kind, field, trigger, quote.best_bid)
        link, current = await _link(session, position.id, kind)
        if (current is not None and current.type == order_type and _remaining(current) == quantity
                and (current.price if limit else current.stop_price) == trigger):
            return current  # the same exit again: nothing to do
        if current is not None and account.is_live and not emulated_waiting(current):
            raise ExitInFlight()
        await self._check_holding(session, account, instrument, quantity)
        await self._check_open_orders(session, principal, replacing=current is not None)

        writer = OrderWriter(session, account, now)
        if current is not None:
            await writer.close(current, OrderStatus.CANCELED, reason="exit_replaced")
        if quote is None:
            row = await self._place(writer, position, instrument, kind, order_type, trigger, quantity)
        else:  # kept by the platform (live/emulation.py)
            row = await _accepted_exit(writer, position, kind, venue=live_venue_name(account.venue),
                                       order_type=order_type, quantity=quantity, price=None, stop_price=trigger,
                                       emulated=True)
            await writer.finish(row)
        if link is None:
            session.add(PositionExit(position_id=position.id, account_id=position.account_id,
                                     user_id=position.user_id, kind=kind, order_id=row.id, order_type=order_type,
                                     trigger_price=trigger, created_at=now, updated_at=now))
        else:
            link.order_id, link.order_type, link.trigger_price, link.updated_at = row.id, order_type, trigger, now
        await session.flush()
        return row

    async def remove_exit(self, session: AsyncSession, position_id: uuid.UUID, kind: str) -> None:
        """Cancel the position's stop-loss / take-profit, if any (``exit_removed``). Never commits."""
        account, position = await _lock_position(session, position_id)
        link, current = await _link(session, position.id, kind)
        if current is not None and account.is_live and not emulated_waiting(current):
            raise ExitInFlight()
        if current is not None:
            await OrderWriter(session, account, self.runtime.clock.now()).close(
                current, OrderStatus.CANCELED, reason="exit_removed")
        if link is not None:
            await session.delete(link)
            await session.flush()

    async def _live_quote(self, session: AsyncSession, position_id: uuid.UUID) -> LiveQuote | None:
        """On a live account, the exchange's instrument and best bid (None on paper), read with no
        lock held: the caller's transaction, which holds only reads so far (the request's
        dependencies) but on SQLite already the process's writer lock, is ended first."""
        found = (await session.execute(select(Position.account_id, Position.symbol)
                                       .where(Position.id == position_id))).one_or_none()
        if found is None:
            raise position_not_found()
        account = await detached_live_account(self.runtime, found[0])
        if account is None:
            return None
        assert not (session.new or session.dirty or session.deleted), "set_exit on live must come before any write"
        await session.rollback()
        async with live_venues(self.runtime).open(account) as exchange:
            instrument = await exchange.instrument(found[1])
            book = await exchange.order_book(found[1], 5)
        return LiveQuote(instrument, book.bids[0][0] if book.bids else None)

    def _check_side_of_market(self, kind: str, field: str, trigger: Decimal, symbol: str, *, limit: bool) -> None:
        """A stop-loss below the market, a take-profit above it: one that would fire (or take)
        at once is refused, as venues refuse an order that would immediately trigger."""
        last = self.market.last_price(symbol)  # triggers fire on trades: the last one is the reference
        book = self.market.order_book(symbol)
        best_bid = book.bids[0][0] if book is not None and book.bids else None
        if kind == ExitKind.STOP_LOSS:
            if last is not None and trigger >= last:
                raise Unprocessable(f"A stop-loss at {_s(trigger)} is not below the last price {_s(last)}: it would "
                                    "fire at once.", code="stop_loss_would_trigger",
                                    extra={"field": field, "last_price": _s(last)})
            return
        if last is not None and trigger <= last:
            raise Unprocessable(f"A take-profit at {_s(trigger)} is not above the last price {_s(last)}: it would "
                                "fire at once.", code="take_profit_would_trigger",
                                extra={"field": field, "last_price": _s(last)})
        if limit and best_bid is not None and trigger <= best_bid:
            raise Unprocessable(f"A limit take-profit at {_s(trigger)} would take the best bid {_s(best_bid)}.",
                                code="take_profit_would_trigger", extra={"field": field, "best_bid": _s(best_bid)})

    async def _check_holding(self, session: AsyncSession, account: TradingAccount, instrument: Instrument,
                             quantity: Decimal) -> None:
        balances = {b.asset: b for b in await ledger.get_balances(session, account.id)}
        base = balances.get(instrument.base)
        free = base.free if base is not None else ZERO
        if quantity > free:
            raise Unprocessable(
                f"The exit would sell {_s(quantity)} {instrument.base} but only {_s(free)} is free (the rest is held "
                "by your open sell orders, or was withdrawn).", code="insufficient_position",
                extra={"requested": _s(quantity), "available": _s(free)})

    async def _check_open_orders(self, session: AsyncSession, principal: AuthUser, *, replacing: bool) -> None:
        user = await session.get(User, principal.id)
        assert user is not None
        limit = effective_limits(user.plan, dict(settings_of(user).limits)).open_orders
        count = await count_open_orders_of_user(session, principal.id) - (1 if replacing else 0)
        if count >= limit:
            raise Unprocessable(f"You already have {count} open orders, the limit of your plan.",
                                code="open_orders_limit", extra={"limit": limit})

    async def _place(self, writer: OrderWriter, position: Position, instrument: Instrument, kind: str,
                     order_type: str, trigger: Decimal, quantity: Decimal) -> Order:
        """The exit order: accepted by a transient engine (armed, or resting for a limit) and
        written as the order service writes a placement — without a reservation."""
        now = writer.now
        order_id = uuid.uuid4()
        limit = order_type == OrderType.LIMIT
        order = EngineOrder(id=str(order_id), account_id=str(position.account_id), symbol=instrument.symbol,
                            side="sell", type=order_type, quantity=quantity,  # type: ignore[arg-type]
                            price=trigger if limit else None, stop_price=None if limit else trigger)
        events = MatchingEngine(self.orders.fee_schedule(), [instrument]).place(order, now)
        if order.status == OrderStatus.REJECTED:  # the shape was checked above: a bug, not input
            raise Unprocessable("The exit order was refused.", code="exit_rejected")
        row = _new_exit_row(order_id, position, writer.account.id, venue=self.market.venue, order_type=order_type,
                            quantity=quantity, price=order.price, stop_price=order.stop_price, now=now)
        writer.session.add(row)
        await writer.session.flush()
        await writer.add_event(row, "received", OrderStatus.PENDING_NEW, _received_detail(row, position, kind))
        order.seq = _priority(now)
        await writer.apply(row, order, events)
        return row


def _check_side_of_book(kind: str, field: str, trigger: Decimal, best_bid: Decimal | None) -> None:
    """A live exit fires on the exchange's best bid: one already crossed would fire at once."""
    if best_bid is None:
        raise Unprocessable("The exchange's book has no bid: the exit could not be watched.", code="no_liquidity")
    if kind == ExitKind.STOP_LOSS and trigger >= best_bid:
        raise Unprocessable(f"A stop-loss at {_s(trigger)} is not below the best bid {_s(best_bid)}: it would fire at "
                            "once.", code="stop_loss_would_trigger", extra={"field": field, "best_bid": _s(best_bid)})
    if kind == ExitKind.TAKE_PROFIT and trigger <= best_bid:
        raise Unprocessable(f"A take-profit at {_s(trigger)} is not above the best bid {_s(best_bid)}: it would fire "
                            "at once.", code="take_profit_would_trigger",
                            extra={"field": field, "best_bid": _s(best_bid)})


async def _accepted_exit(writer: OrderWriter, position: Position, kind: str, *, venue: str, order_type: str,
                         quantity: Decimal, price: Decimal | None, stop_price: Decimal | None, emulated: bool,
                         **received: Any) -> Order:
    """An exit order written straight as accepted (``new``): a live exit kept by the platform,
    or a successor that follows its position as its predecessor was accepted."""
    row = _new_exit_row(uuid.uuid4(), position, writer.account.id, venue=venue, order_type=order_type,
                        quantity=quantity, price=price, stop_price=stop_price, now=writer.now, status=OrderStatus.NEW)
    row.seq, row.accepted_at = _priority(writer.now), writer.now
    writer.session.add(row)
    await writer.session.flush()
    await writer.add_event(row, "received", OrderStatus.PENDING_NEW, _received_detail(row, position, kind, **received))
    await writer.add_event(row, "accepted", OrderStatus.NEW, {"seq": row.seq, **({"emulated": True} if emulated else {})})
    return row


def _floor_to_step(quantity: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return quantity
    units = EXACT.divide(quantity, step).quantize(Decimal(1), rounding=ROUND_FLOOR, context=EXACT)
    floored = EXACT.multiply(units, step)
    if floored <= 0:
        raise Unprocessable(f"The position ({_s(quantity)}) is smaller than one step ({_s(step)}).",
                            code="position_below_step", extra={"quantity": _s(quantity), "step_size": _s(step)})
    return floored


def _new_exit_row(order_id: uuid.UUID, position: Position, account_id: uuid.UUID, *, venue: str, order_type: str,
                  quantity: Decimal, price: Decimal | None, stop_price: Decimal | None, now: datetime,
                  status: str = OrderStatus.PENDING_NEW) -> Order:
    return Order(id=order_id, account_id=account_id, user_id=position.user_id, client_order_id=uuid.uuid4().hex,
                 venue=venue, symbol=position.symbol, base_asset=position.base_asset,
                 quote_asset=position.quote_asset, side="sell", type=order_type, time_in_force="gtc",
                 quantity=quantity, quote_quantity=None, price=price, stop_price=stop_price, trail_amount=None,
                 trail_percent=None, post_only=False, reduce_only=True, status=status, filled_quantity=ZERO,
                 filled_notional=ZERO, fees=ZERO, fee_asset=position.quote_asset, reserved=ZERO,
                 reserved_asset=position.base_asset, revision=0, seq=0, fill_count=0, triggered=False,
                 event_seq=0, created_at=now, updated_at=now)


def _received_detail(row: Order, position: Position, kind: str, **more: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"symbol": row.symbol, "side": "sell", "type": row.type, "quantity": row.quantity,
                              "reduce_only": True, "position_id": position.id, "exit": kind}
    if row.price is not None:
        detail["price"] = row.price
    if row.stop_price is not None:
        detail["stop_price"] = row.stop_price
    detail.update(more)
    return detail


# --- exits follow their position -----------------------------------------------------------------

@on_position_change
async def follow(writer: OrderWriter, row: Order, position: Position) -> None:
    """In the transaction of ``row``'s fills: bring the position's exits in line with it."""
    session = writer.session
    links = list(await session.scalars(select(PositionExit).where(PositionExit.position_id == position.id)
                                       .order_by(PositionExit.kind)))
    for link in links:
        exit_order = await session.scalar(select(Order).where(Order.id == link.order_id)
                                          .execution_options(populate_existing=True))
        if exit_order is None or not exit_order.is_open:
            await session.execute(delete(PositionExit).where(PositionExit.id == link.id))
            continue
        if exit_order.id == row.id:
            continue  # the exit being filled: its remaining shrinks with the position
        if writer.account.is_live and not emulated_waiting(exit_order):
            continue  # a live exit that fired: its sell is on the exchange, and its fill ends it
        if position.quantity <= 0:
            await writer.close(exit_order, OrderStatus.CANCELED, reason="position_closed")
            await session.execute(delete(PositionExit).where(PositionExit.id == link.id))
            continue
        if _remaining(exit_order) == position.quantity:
            continue
        await writer.close(exit_order, OrderStatus.CANCELED, reason="exit_resized")
        # accepted as its predecessor was: armed (a stop, a take-profit), resting (a limit) or kept
        # by the platform (a live account's)
        successor = await _accepted_exit(writer, position, link.kind, venue=exit_order.venue,
                                         order_type=exit_order.type, quantity=position.quantity,
                                         price=exit_order.price, stop_price=exit_order.stop_price,
                                         emulated=writer.account.is_live, replaces=exit_order.id,
                                         reason="position_changed")
        link.order_id, link.updated_at = successor.id, writer.now
        await session.flush()
        await writer.finish(successor)  # announces it: the matching owner loads it
