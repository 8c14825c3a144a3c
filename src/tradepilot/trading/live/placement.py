"""An order's way to a real exchange: recorded first, sent once, never lost (docs/exchanges.md).

Placing an order on a live account runs the same checks as on paper — the body, the order's
shape (the engine's validation), the instrument's filters (the exchange's own markets), the
account, ``client_order_id`` uniqueness, the pre-trade risk checks against the ledger read
under the account's lock — and then, unlike paper, in three steps:

1. **Record** (one transaction, committed): the order as ``pending_new`` with its
   ``received`` event, the reservation, and ``order.updated``. From here on the order exists
   for the platform whatever happens to this process.
2. **Send** once, with the client order id ``tp-<order id hex>`` (35 characters: within
   Binance's 36), outside any database transaction (no lock is held across the network).
3. **Record the outcome** (one transaction): accepted, the fills with the exchange's prices
   and fees settled through the ledger, the position, the final status and what the order no
   longer needs released — through the same ``OrderWriter`` as paper, so the events are the same.

When the answer is lost (a timeout, a dropped connection, a 5xx, an answer that cannot be
trusted) the order is **looked up by its client order id**, retried with doubling back-off
because an exchange may report a fresh order missing for a while — and **never sent again**.
If the lookups do not find it either, the order stays ``pending_new`` with its reservation
(an ``outcome_unknown`` event says so) and the answer is 202: reconciliation
(``reconciliation.py``) settles it. A rejection (insufficient funds, invalid order, a rate limit —
Binance refuses those before acting) ends the order ``rejected`` and answers the error.

``market`` and ``limit`` orders go to any supported exchange; ``stop``, ``stop_limit``,
``take_profit`` and ``take_profit_limit`` to an exchange that keeps and triggers them itself
(``exchange.NATIVE_STOPS``: Binance spot's STOP_LOSS(_LIMIT) / TAKE_PROFIT(_LIMIT)), so they work
even while TradePilot is down. Trailing stops are kept by the platform (``live/emulation.py``).
Anything else (brackets, OCO, ``quote_quantity``, ``post_only``) is 422 ``order_type_not_supported``.

A modified order (``live.modify``: cancel-replace) is sent again under a new client id
``tp-<order id hex><revision>``: the exchange refuses to reuse one, and reconciliation must tell
the replacement from the order it replaced.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import NotFound, Unprocessable
from tradepilot.identity.principal import AuthUser
from tradepilot.trading import ledger
from tradepilot.trading.engine import (
    EngineEvent,
    FeeSchedule,
    MatchingEngine,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderUpdated,
)
from tradepilot.trading.engine import Fill as EngineFill
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import Liquidity, OrderType, Side
from tradepilot.trading.engine.orders import OrderStatus as EngineStatus
from tradepilot.trading.engine.validation import check_order
from tradepilot.trading.execution import OrderWriter, add, ceil18, mul, sub
from tradepilot.trading.filters import OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.live.answers import VenueOrder, VenueTrade
from tradepilot.trading.live.client_ids import client_order_id, live_venue_name, row_client_id
from tradepilot.trading.live.errors import (
    ExchangeAuthError,
    ExchangeBadRequest,
    ExchangeError,
    ExchangeRateLimited,
    MalformedAnswer,
)
from tradepilot.trading.live.exchange import NATIVE_STOPS, LiveExchange
from tradepilot.trading.live.post_restore import ensure_reconciled_since_restore
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Order, OrderSource, OrderStatus
from tradepilot.trading.order_schemas import OrderCreate
from tradepilot.trading.orders import DuplicateClientOrderId, Prepared, order_not_found

if TYPE_CHECKING:
    from tradepilot.trading.orders import OrderService

logger = logging.getLogger("tradepilot.trading.live")

ZERO = Decimal(0)
LIVE_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})
LIVE_TIME_IN_FORCE = frozenset({"gtc", "ioc", "fok"})

Finish = Callable[[AsyncSession, Order, int], Awaitable[Any]]  # (session, order, status) → the answer
OnRecord = Callable[[AsyncSession, Order], Awaitable[None]]  # inside step 1's transaction (a run's fence)


def unsupported(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="order_type_not_supported")


class LivePlacement:
    """Live orders through ``OrderService`` (``service.live``): placing and cancelling."""

    def __init__(self, service: OrderService) -> None:
        self.service = service
        self.runtime = service.runtime
        self.settings = service.runtime.settings
        self.clock = service.clock

    # --- the checks before anything is written ------------------------------------------------

    @staticmethod
    def check_supported(body: OrderCreate, exchange_id: str) -> None:
        if body.is_group:
            raise unsupported("Brackets and OCO orders are not available on live accounts yet.")
        native = NATIVE_STOPS.get(exchange_id, {})
        if body.type not in LIVE_TYPES and body.type not in native and body.type != OrderType.TRAILING_STOP:
            kinds = ", ".join(["market", "limit", *native, "trailing_stop"])
            raise unsupported(f"{body.type} orders are not available on {exchange_id} accounts yet: use {kinds}.")
        if body.quote_quantity is not None:
            raise unsupported("quote_quantity is not available on live accounts yet: give quantity.")
        if body.post_only:
            raise unsupported("post_only is not available on live accounts yet.")
        if body.time_in_force not in LIVE_TIME_IN_FORCE:
            raise unsupported(f"time_in_force {body.time_in_force} is not available on live accounts: "
                              "use gtc, ioc or fok.")

    async def prepare(self, exchange: LiveExchange, body: OrderCreate) -> Prepared:
        """Instrument (the exchange's), shape, filters, and the exchange's book to price the order."""
        instrument = await exchange.instrument(body.symbol)
        problem = check_order(self.service._engine_order(body, instrument.symbol, "-", "-"))
        if problem is not None:
            raise Unprocessable(problem[1], code=problem[0])
        book = await exchange.order_book(instrument.symbol)
        side = book.asks if body.side == "buy" else book.bids
        check_filters(instrument, OrderAmounts(quantity=body.quantity, price=body.price, stop_price=body.stop_price,
                                               quote_quantity=None),
                      reference_price=side[0][0] if side else None)
        if body.type in (OrderType.MARKET, OrderType.TRAILING_STOP) and not side:
            raise Unprocessable(f"The exchange's book for {instrument.symbol} is empty on the {body.side} side.",
                                code="no_liquidity")
        return Prepared(body, instrument, book, None)

    # --- placing -------------------------------------------------------------------------------------

    async def place(self, principal: AuthUser, body: OrderCreate, account: TradingAccount,
                    finish: Finish, on_record: OnRecord | None = None, *, halt_exempt: bool = False) -> Any:
        """Place ``body`` on the live ``account``; ``finish(session, order, status)`` renders the
        answer inside the transaction that records the outcome (the Idempotency-Key's answer is
        stored with the order's final state). ``on_record(session, order)`` runs inside step 1's
        transaction before anything is sent: a strategy run fences it with its lease and
        attributes the order there (raising aborts: nothing recorded, nothing sent). ``halt_exempt``:
        the panic button's reduce-only closes, allowed while the platform is halted."""
        self.check_supported(body, account.venue)
        await ensure_reconciled_since_restore(self.runtime, account.id)  # a restored database is stale
        async with live_venues(self.runtime).open(account) as exchange:
            prepared = await self.prepare(exchange, body)
            row_id = await self._record(principal, prepared, account.id, on_record, halt_exempt=halt_exempt)
            if body.type == OrderType.TRAILING_STOP:  # kept by the platform until it fires (live/emulation.py)
                # imported here: live/emulation.py builds on this module
                from tradepilot.trading.live.emulation import accept_emulated
                await accept_emulated(self, row_id, best_price(prepared, body.side))
                async with self.runtime.db.transaction() as session:
                    _, row = await self._locked_order(session, row_id)
                    return await finish(session, row, 201)
            cid = client_order_id(row_id)
            try:
                answer = await exchange.create_order(
                    symbol=prepared.instrument.symbol, type=body.type, side=body.side, quantity=body.quantity,
                    price=body.price, client_order_id=cid, time_in_force=body.time_in_force,
                    stop_price=body.stop_price)
            except (ExchangeBadRequest, ExchangeAuthError, ExchangeRateLimited) as exc:
                # the exchange answered and did not act (Binance refuses 429/418 before processing)
                async with self.runtime.db.transaction() as session:
                    await self._reject(session, row_id, exc)
                raise _with_order(exc, row_id) from None
            except ExchangeError as exc:  # sent, and no usable answer: look it up, never resend
                logger.warning("live order outcome unknown; looking it up",
                               extra={"order_id": str(row_id), "exchange": exchange.venue, "error": exc.code})
                answer = await self._look_up(exchange, prepared.instrument.symbol, cid)
            trades: tuple[VenueTrade, ...] | list[VenueTrade] = () if answer is None else answer.trades
            if answer is not None and answer.filled > 0 and not trades:
                try:
                    trades = await self._trades_of(exchange, prepared.instrument.symbol, answer)
                except ExchangeError as exc:
                    logger.warning("live order's trades unreadable", extra={"order_id": str(row_id),
                                                                            "error": exc.code})
                    answer = None
        async with self.runtime.db.transaction() as session:
            row = await self._write_outcome(session, row_id, answer, list(trades))
            return await finish(session, row, 201 if answer is not None else 202)

    async def _record(self, principal: AuthUser, prepared: Prepared, account_id: uuid.UUID,
                      on_record: OnRecord | None = None, *, halt_exempt: bool = False) -> uuid.UUID:
        """Step 1: the checks under the account's lock, then the order as pending_new with its reservation."""
        service, body, instrument = self.service, prepared.body, prepared.instrument
        async with self.runtime.db.transaction() as session:
            now = self.clock.now()
            if not halt_exempt:
                await ensure_not_halted(session)
            account = await service.resolve_account(session, principal, account_id, allow_live=True)
            if body.client_order_id is not None and await session.scalar(select(Order.id).where(
                    Order.account_id == account.id, Order.client_order_id == body.client_order_id)) is not None:
                raise DuplicateClientOrderId(body.client_order_id)
            order_id = uuid.uuid4()
            order = service._engine_order(body, instrument.symbol, str(order_id), str(account.id))
            if body.type == OrderType.TRAILING_STOP:  # its mark starts at the side's best price
                order.water_mark = best_price(prepared, body.side)
            engine = MatchingEngine(FeeSchedule(service.rates), [instrument])  # the estimate: walk the book
            assert prepared.book is not None
            engine.on_book(prepared.book)
            fills = [e for e in engine.place(order, now) if isinstance(e, EngineFill)]
            full, used = service._reservation(order, fills)
            if body.type == OrderType.MARKET:
                if body.side == "buy":  # the book moves: keep a margin for slippage (released after)
                    full = ceil18(mul(used, 1 + self.settings.live_market_buffer))
                else:
                    full = body.quantity or ZERO
            elif body.type == OrderType.TRAILING_STOP and body.side == "buy":
                # its stop only moves down, so the level at placement bounds its cost; the market
                # buy it sends may pay above the stop: the same margin as a market buy
                full = ceil18(mul(full, 1 + self.settings.live_market_buffer))
            await service._check_risk(session, principal, account, order, prepared, fills, cost=full)
            quote, base = instrument.quote, instrument.base
            row = Order(id=order_id, account_id=account.id, user_id=principal.id,
                        client_order_id=body.client_order_id or client_order_id(order_id),
                        venue=live_venue_name(account.venue), symbol=instrument.symbol, base_asset=base,
                        quote_asset=quote, side=body.side, type=body.type, time_in_force=body.time_in_force,
                        quantity=body.quantity, quote_quantity=None, price=body.price, stop_price=body.stop_price,
                        trail_amount=body.trail_amount, trail_percent=body.trail_percent, post_only=False,
                        reduce_only=body.reduce_only,
                        status=OrderStatus.PENDING_NEW, filled_quantity=ZERO, filled_notional=ZERO, fees=ZERO,
                        fee_asset=quote, reserved=ZERO, reserved_asset=quote if body.side == "buy" else base,
                        revision=0, seq=0, fill_count=0, triggered=False, event_seq=0, created_at=now,
                        updated_at=now)
            session.add(row)
            if on_record is not None:
                await on_record(session, row)
            writer = OrderWriter(session, account, now)
            await writer.add_event(row, "received", OrderStatus.PENDING_NEW, {
                **{k: v for k, v in body.model_dump(exclude={"account_id"}).items() if v is not None and v is not False},
                "exchange": account.venue, "exchange_client_order_id": client_order_id(order_id)})
            await writer.reserve(row, full)
            await writer.finish(row)
        return order_id

    async def _look_up(self, exchange: LiveExchange, symbol: str, cid: str) -> VenueOrder | None:
        """The order by its client id, asked up to ``live_lookup_attempts`` times with doubling
        waits (an exchange can report a fresh order missing for a while). None: still unknown."""
        delay = self.settings.live_lookup_backoff_seconds
        for attempt in range(self.settings.live_lookup_attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                found = await exchange.find_order(symbol=symbol, client_order_id=cid)
            except ExchangeRateLimited as exc:
                delay = max(delay, exc.retry_after or delay)
                continue
            except (ExchangeError, MalformedAnswer):
                continue
            if found is not None and found.client_order_id not in (None, cid):
                continue  # an answer about another order cannot settle this one
            if found is not None:
                return found
        return None

    async def _trades_of(self, exchange: LiveExchange, symbol: str, answer: VenueOrder) -> list[VenueTrade]:
        trades = await exchange.order_trades(symbol=symbol, exchange_order_id=answer.exchange_id)
        total = ZERO
        for trade in trades:
            total = add(total, trade.quantity)
        if total != answer.filled:
            raise MalformedAnswer("the order's trades do not add up to its filled quantity", venue=exchange.venue)
        return trades

    # --- recording the outcome -------------------------------------------------------------------------

    async def _locked_order(self, session: AsyncSession, order_id: uuid.UUID) -> tuple[TradingAccount, Order]:
        account_id = await session.scalar(select(Order.account_id).where(Order.id == order_id))
        if account_id is None:
            raise order_not_found()
        account = await ledger.lock_account(session, account_id)
        row = await session.scalar(select(Order).where(Order.id == order_id).execution_options(populate_existing=True))
        assert row is not None
        return account, row

    async def _reject(self, session: AsyncSession, order_id: uuid.UUID, exc: ExchangeError) -> None:
        account, row = await self._locked_order(session, order_id)
        if not row.is_open:
            return
        now = self.clock.now()
        row.reject_code, row.reject_reason = exc.code, exc.detail[:300]
        writer = OrderWriter(session, account, now)
        await writer.apply(row, self._engine_state(row, EngineStatus.REJECTED, ZERO, ZERO, ZERO, 0, now), [
            OrderRejected(order_id=str(row.id), account_id=str(row.account_id), code=exc.code, detail=exc.detail,
                          ts=now)])

    async def _write_outcome(self, session: AsyncSession, order_id: uuid.UUID, answer: VenueOrder | None,
                             trades: list[VenueTrade]) -> Order:
        account, row = await self._locked_order(session, order_id)
        now = self.clock.now()
        writer = OrderWriter(session, account, now)
        if answer is None:
            await writer.add_event(row, "outcome_unknown", row.status, {
                "exchange_client_order_id": row_client_id(row),
                "detail": "the exchange's answer was lost and lookups did not find the order yet"})
            await writer.finish(row)
            return row
        if not row.is_open or row.status != OrderStatus.PENDING_NEW:
            return row  # another path (a reconciliation, later) recorded it first
        row.exchange_order_id = answer.exchange_id
        await writer.apply(row, *self._events(row, answer, trades, now))
        return row

    def _events(self, row: Order, answer: VenueOrder, trades: list[VenueTrade],
                now: Any) -> tuple[EngineOrder, list[EngineEvent]]:
        """The exchange's outcome as engine events, so ``OrderWriter`` records it as it records paper."""
        oid, aid = str(row.id), str(row.account_id)
        events: list[EngineEvent] = [OrderAccepted(order_id=oid, account_id=aid, status=EngineStatus.NEW, seq=0, ts=now)]
        filled, notional, fees, status = ZERO, ZERO, ZERO, EngineStatus.NEW
        for n, trade in enumerate(trades, start=1):
            fee_asset = trade.fee_asset or row.quote_asset
            events.append(EngineFill(order_id=oid, account_id=aid, symbol=row.symbol, side=Side(row.side),
                                     price=trade.price, quantity=trade.quantity, fee=trade.fee,
                                     fee_currency=fee_asset,
                                     liquidity=Liquidity.MAKER if trade.maker else Liquidity.TAKER,
                                     trade_id=f"{row.id}-x{trade.id}", market_trade_id=trade.id, ts=now))
            previous = status
            filled, notional = add(filled, trade.quantity), add(notional, mul(trade.price, trade.quantity))
            if fee_asset == row.quote_asset:
                fees = add(fees, trade.fee)
            status = EngineStatus.FILLED if filled >= answer.quantity else EngineStatus.PARTIALLY_FILLED
            events.append(OrderUpdated(order_id=oid, account_id=aid, status=status, previous_status=previous,
                                       filled_quantity=filled, remaining_quantity=sub(answer.quantity, filled),
                                       filled_notional=notional, fees=fees, ts=now))
        if answer.status in ("canceled", "expired", "rejected") and status != EngineStatus.FILLED:
            # a market or IOC remainder the exchange did not fill: it ends here
            status = EngineStatus.CANCELED
            events.append(OrderCanceled(order_id=oid, account_id=aid, reason=f"exchange_{answer.status}",
                                        filled_quantity=filled, ts=now))
        return self._engine_state(row, status, filled, notional, fees, len(trades), now), events

    @staticmethod
    def _engine_state(row: Order, status: EngineStatus, filled: Decimal, notional: Decimal, fees: Decimal,
                      fill_count: int, now: Any) -> EngineOrder:
        order = EngineOrder(id=str(row.id), account_id=str(row.account_id), symbol=row.symbol, side=Side(row.side),
                            type=OrderType(row.type), quantity=row.quantity, price=row.price,
                            stop_price=row.stop_price, trail_amount=row.trail_amount, trail_percent=row.trail_percent,
                            time_in_force=row.time_in_force)  # type: ignore[arg-type]
        order.status, order.filled_quantity, order.filled_notional, order.fees = status, filled, notional, fees
        order.fill_count, order.accepted_at, order.revision = fill_count, now, row.revision
        order.water_mark = row.water_mark
        # a conditional order the exchange keeps: it has triggered there once it trades
        order.triggered = bool(row.triggered) or (row.stop_price is not None and filled > 0)
        return order

    # --- cancelling ------------------------------------------------------------------------------------

    async def cancel(self, row: Order) -> Order:
        """Cancel on the exchange first (by client id), then record it and release the reservation.
        An order the exchange already filled is recorded as filled instead (409 is for final orders)."""
        refuse_external(row)
        account = await self.account_of(row.account_id)
        async with live_venues(self.runtime).open(account) as exchange:
            answer, trades = await self.ask_cancel(exchange, row)
        return await self.record_cancel(row.id, answer, trades)

    async def account_of(self, account_id: uuid.UUID) -> TradingAccount:
        """The account, detached (read without a lock: its credentials open the exchange)."""
        async with self.runtime.db.read() as session:
            account = await session.get(TradingAccount, account_id)
            if account is None:
                raise NotFound("Trading account not found.", code="account_not_found")
            session.expunge(account)
        return account

    async def ask_cancel(self, exchange: LiveExchange,
                         row: Order) -> tuple[VenueOrder | None, list[VenueTrade]]:
        """The exchange's side of a cancel, outside any transaction: cancel by client id, or — if
        it has nothing open by that id — the order as it ended there (None: never reached it)."""
        if emulated_waiting(row):
            return None, []  # kept by the platform, never sent: nothing to cancel there
        cid = row_client_id(row)
        try:
            answer: VenueOrder | None = await exchange.cancel_order(symbol=row.symbol, client_order_id=cid)
        except ExchangeBadRequest as exc:
            if exc.code != "order_not_found":
                raise
            answer = None  # already final there (filled, or never reached it): look it up
        if answer is None:
            answer = await exchange.find_order(symbol=row.symbol, client_order_id=cid)
        trades: list[VenueTrade] = []
        if answer is not None and answer.filled > 0:
            trades = await self._trades_of(exchange, row.symbol, answer)
        return answer, trades

    async def record_cancel(self, order_id: uuid.UUID, answer: VenueOrder | None,
                            trades: list[VenueTrade], *, reason: str = "canceled_by_user") -> Order:
        """The exchange's answer to a cancel, recorded in one transaction under the account's lock."""
        async with self.runtime.db.transaction() as session:
            account, current = await self._locked_order(session, order_id)
            if emulated_waiting(current):  # an emulated order that has not fired: ends here
                await OrderWriter(session, account, self.clock.now()).close(current, OrderStatus.CANCELED,
                                                                            reason=reason)
                return current
            if not current.is_open or answer is None:
                return current
            now = self.clock.now()
            current.exchange_order_id = answer.exchange_id
            writer = OrderWriter(session, account, now)
            order, events = self._events(current, answer, trades, now)
            if current.status != OrderStatus.PENDING_NEW:
                events = [e for e in events if not isinstance(e, OrderAccepted)]
                if current.fill_count:  # fills recorded before: only the new ones
                    events = _after_fill(events, current.fill_count)
            if order.status not in (EngineStatus.FILLED, EngineStatus.CANCELED):
                order.status = EngineStatus.CANCELED
                events.append(OrderCanceled(order_id=str(current.id), account_id=str(current.account_id),
                                            reason=reason, filled_quantity=order.filled_quantity, ts=now))
            elif order.status == EngineStatus.CANCELED:
                for event in events:
                    if isinstance(event, OrderCanceled):
                        event.reason = reason
            await writer.apply(current, order, events)
            return current


def best_price(prepared: Prepared, side: str) -> Decimal:
    """What a market order on ``side`` would get first: the best ask for a buy, bid for a sell
    (``prepare`` refused an empty side)."""
    assert prepared.book is not None
    levels = prepared.book.asks if side == "buy" else prepared.book.bids
    return levels[0][0]


def emulated_waiting(row: Order) -> bool:
    """An order the platform keeps for the exchange (a live trailing stop, a position's stop-loss
    or take-profit: ``live/emulation.py``) that has not fired: the exchange has never seen it. A
    live order becomes ``new`` otherwise only by an exchange's answer, which names its id."""
    if row.status != OrderStatus.NEW or row.source == OrderSource.EXTERNAL:
        return False
    return row.type == OrderType.TRAILING_STOP or (
        row.type in (OrderType.STOP, OrderType.TAKE_PROFIT) and row.reduce_only and row.exchange_order_id is None)


def refuse_external(row: Order) -> None:
    if row.source == OrderSource.EXTERNAL:
        raise Unprocessable("This order was placed outside TradePilot (source: external): TradePilot never "
                            "cancels it. Cancel it where it was placed.", code="external_order")


def _after_fill(events: list[EngineEvent], recorded: int) -> list[EngineEvent]:
    """Drop the first ``recorded`` fills (and their updates): they are in the database already."""
    out: list[EngineEvent] = []
    seen = 0
    skip_update = False
    for event in events:
        if isinstance(event, EngineFill):
            seen += 1
            skip_update = seen <= recorded
            if skip_update:
                continue
        elif isinstance(event, OrderUpdated) and skip_update:
            skip_update = False
            continue
        out.append(event)
    return out


def _with_order(exc: ExchangeError, order_id: uuid.UUID) -> ExchangeError:
    """The same error, naming the (rejected) order it refused."""
    exc.extra = {**exc.extra, "order_id": str(order_id)}
    return exc
