"""Orders TradePilot keeps for a live account until they fire (docs/exchanges.md, "Conditional orders").

Two kinds are **kept by the platform**: recorded and accepted here, never sent until they fire.

* **Trailing stops.** Binance spot has a trailing delta on its STOP_LOSS orders, but measured in
  basis points from the price at which the order is activated, which is not TradePilot's trail
  (an amount, or a percentage of the best price since placement). A buy reserves its quantity
  at the stop level of its placement (its stop only moves down) plus the market-buy margin
  (``live_market_buffer``): the market buy it sends may pay above the stop.
* **A position's stop-loss and take-profit** (``position_exits``). Both protect the same coins
  and only one may ever sell them; on the exchange each would lock the whole quantity, so the
  second could not be placed. Kept here, they reserve nothing (as on paper) and the first to
  fire sells the position; its fill flattens the position and ``follow`` cancels the other.

How:

* **Who watches.** The process holding the account's reconciliation lease (one per account,
  ``reconciliation_owner``) ticks :class:`Emulator` between its runs, every
  ``live_emulation_interval_seconds`` by the runtime's clock.
* **The price.** The exchange's own book (``fetch_order_book``): the best bid for a sell, the
  best ask for a buy — what the market order would get. A stop-loss fires at or below its stop,
  a take-profit at or above it (paper exits fire on trades; a live account has no trade feed
  of its own); a trailing sell at or below its stop, a trailing buy at or above it.
* **The water mark** of a trailing stop (a sell's highest bid, a buy's lowest ask) moves with
  the price and is written (``stop_moved``)
  with the stop price it implies, fenced by the lease: a restart, or another replica taking the
  account over, continues from the stored mark.
* **Firing** is one transaction (``triggered``, status ``pending_new``), then ONE market order
  sent with the order's ``tp-`` client id and recorded like any placement: a lost answer is
  looked up, never resent. A crash after the status change leaves a ``pending_new`` order that
  the emulator never picks again (it watches ``new`` orders only) and that reconciliation
  adopts or ends — so the market order is sent at most once, across restarts. An exit does not
  fire while its sibling's sell is in flight.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import TradePilotError
from tradepilot.core.lease import Lease
from tradepilot.market.types import OrderBook
from tradepilot.trading.engine.orders import OrderType
from tradepilot.trading.engine.triggers import trail_level
from tradepilot.trading.execution import OrderWriter, to_engine
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.live.answers import VenueOrder, VenueTrade
from tradepilot.trading.live.client_ids import row_client_id
from tradepilot.trading.live.errors import (
    ExchangeAuthError,
    ExchangeBadRequest,
    ExchangeError,
    ExchangeRateLimited,
)
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Order, OrderSource, OrderStatus
from tradepilot.trading.position_models import PositionExit

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime
    from tradepilot.trading.live.exchange import LiveExchange
    from tradepilot.trading.live.placement import LivePlacement

logger = logging.getLogger("tradepilot.trading.live.emulation")

EXIT_TYPES = frozenset({OrderType.STOP, OrderType.TAKE_PROFIT})  # a position's emulated exits
_IN_FLIGHT = (OrderStatus.PENDING_NEW, OrderStatus.PARTIALLY_FILLED)


def fires(row: Order, price: Decimal) -> tuple[Decimal | None, Decimal | None, bool]:
    """(new water mark, new stop price, fired) of an emulated order seeing ``price``, the best
    price on its side (bid for a sell, ask for a buy); None, None: the mark did not move (or
    the order has none)."""
    assert row.stop_price is not None or row.type == OrderType.TRAILING_STOP
    if row.type == OrderType.STOP:
        return None, None, price <= row.stop_price  # type: ignore[operator]
    if row.type == OrderType.TAKE_PROFIT:
        return None, None, price >= row.stop_price  # type: ignore[operator]
    order = to_engine(row)
    mark, stop = None, None
    # a sell's mark follows the best bid up, a buy's the best ask down
    if order.water_mark is None or (price < order.water_mark if order.is_buy else price > order.water_mark):
        order.water_mark = price
        order.stop_price = trail_level(order)
        mark, stop = order.water_mark, order.stop_price
    assert order.stop_price is not None
    return mark, stop, (price >= order.stop_price if order.is_buy else price <= order.stop_price)


async def accept_emulated(placement: LivePlacement, order_id: uuid.UUID, price: Decimal) -> None:
    """A live trailing stop, just recorded ``pending_new``: accepted here, its mark the exchange's
    best price on its side now (bid for a sell, ask for a buy) — kept by the platform, nothing sent."""
    async with placement.runtime.db.transaction() as session:
        account, row = await placement._locked_order(session, order_id)
        now = placement.clock.now()
        row.water_mark = price
        row.stop_price = trail_level(to_engine(row))
        row.status, row.accepted_at = OrderStatus.NEW, now
        writer = OrderWriter(session, account, now)
        await writer.add_event(row, "accepted", OrderStatus.NEW, {
            "emulated": True, "water_mark": price, "stop_price": row.stop_price})
        await writer.finish(row)


class Emulator:
    """One tick over the account's emulated orders, by the holder of its lease."""

    def __init__(self, runtime: Runtime, account_id: uuid.UUID, lease: Lease) -> None:
        self.runtime = runtime
        self.account_id = account_id
        self.lease = lease
        self.placement: LivePlacement = runtime.services["orders"].live

    async def tick(self) -> list[uuid.UUID]:
        """Move marks and fire what the price crossed; returns the orders fired."""
        async with self.runtime.db.read() as session:
            exits = select(PositionExit.order_id).where(PositionExit.account_id == self.account_id)
            rows = list(await session.scalars(select(Order).where(
                Order.account_id == self.account_id, Order.status == OrderStatus.NEW,
                Order.source == OrderSource.PLATFORM, Order.exchange_order_id.is_(None),
                (Order.type == OrderType.TRAILING_STOP) | (Order.type.in_(EXIT_TYPES) & Order.id.in_(exits)))
                .order_by(Order.created_at, Order.id)))
            account = await session.get(TradingAccount, self.account_id) if rows else None
            for row in rows:
                session.expunge(row)
            if account is not None:
                session.expunge(account)
        if not rows or account is None:
            return []
        fired: list[uuid.UUID] = []
        async with live_venues(self.runtime).open(account) as exchange:
            books: dict[str, OrderBook] = {}
            for row in rows:
                if row.symbol not in books:
                    books[row.symbol] = await exchange.order_book(row.symbol, 5)
                levels = books[row.symbol].asks if row.side == "buy" else books[row.symbol].bids
                price = levels[0][0] if levels else None
                if price is None:
                    continue
                mark, stop, fire = fires(row, price)
                if not await self._mark(row.id, row.revision, mark, stop, price if fire else None):
                    continue
                if fire:
                    await self._send(exchange, row)
                    fired.append(row.id)
        return fired

    async def _mark(self, order_id: uuid.UUID, revision: int, mark: Decimal | None, stop: Decimal | None,
                    fired_at: Decimal | None) -> bool:
        """The moved mark and/or the firing, in one transaction fenced by the lease; False if the
        order changed meanwhile (cancelled, modified): it is looked at again next tick."""
        if mark is None and fired_at is None:
            return True
        async with self.runtime.db.transaction() as session:
            await self.lease.assert_held(session)
            account, row = await self.placement._locked_order(session, order_id)
            if row.status != OrderStatus.NEW or row.revision != revision:
                return False
            if fired_at is not None and await sibling_in_flight(session, row.id):
                return False  # the position's other exit is selling it: this one waits (and is canceled)
            writer = OrderWriter(session, account, self.placement.clock.now())
            if mark is not None:
                row.water_mark, row.stop_price = mark, stop
                await writer.add_event(row, "stop_moved", row.status, {"water_mark": mark, "stop_price": stop})
            if fired_at is not None:
                row.triggered, row.status = True, OrderStatus.PENDING_NEW
                await writer.add_event(row, "triggered", row.status, {
                    "trigger_price": row.stop_price, "trade_price": fired_at,
                    "exchange_client_order_id": row_client_id(row)})
            await writer.finish(row)
        return True

    async def _send(self, exchange: LiveExchange, row: Order) -> None:
        """The fired stop as ONE market order on the exchange, recorded as a placement's outcome."""
        placement, cid = self.placement, row_client_id(row)
        answer: VenueOrder | None
        try:
            answer = await exchange.create_order(symbol=row.symbol, type=OrderType.MARKET, side=row.side,
                                                 quantity=row.quantity, price=None, client_order_id=cid)
        except (ExchangeBadRequest, ExchangeAuthError, ExchangeRateLimited) as exc:
            async with self.runtime.db.transaction() as session:
                await placement._reject(session, row.id, exc)
            logger.warning("emulated trailing stop refused by the exchange",
                           extra={"order_id": str(row.id), "error": exc.code})
            return
        except ExchangeError:
            answer = await placement._look_up(exchange, row.symbol, cid)
        trades: list[VenueTrade] = [] if answer is None else list(answer.trades)
        if answer is not None and answer.filled > 0 and not trades:
            try:
                trades = await placement._trades_of(exchange, row.symbol, answer)
            except TradePilotError:
                answer = None  # reconciliation settles it
        async with self.runtime.db.transaction() as session:
            await placement._write_outcome(session, row.id, answer, trades)


async def sibling_in_flight(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """Another exit of the same position has fired and its sell is not settled yet."""
    position_id = select(PositionExit.position_id).where(PositionExit.order_id == order_id).scalar_subquery()
    siblings = select(PositionExit.order_id).where(PositionExit.position_id == position_id)
    found = await session.scalar(select(Order.id).where(Order.id.in_(siblings), Order.id != order_id,
                                                        Order.status.in_(_IN_FLIGHT)).limit(1))
    return found is not None
