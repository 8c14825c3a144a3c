"""Order use cases on the paper exchange: place, cancel, read (docs/orders.md).

Placing an order, in this order of checks: the body (schema) → the instrument (404
``unknown_symbol``) → the order's shape for its type (422, the engine's codes) → the
instrument's filters (422 naming the filter, never rounding) → then, in ONE database
transaction under the account's lock: ownership of the account, ``client_order_id``
uniqueness (409), the pre-trade risk checks (422) against balances read under the lock, the
reservation, the order row, the taker fills of a transient matching engine fed the current
book, their settlement through the ledger, the release of what a finished order no longer
needs, the position, the order's history and the outbox events. What rests or waits (limits,
stops, trailing stops) is matched from then on by the matching owner (``matching_owner``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.cursors import decode_seq_cursor, seq_cursor
from tradepilot.core.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.usage import usage_counter
from tradepilot.market.types import Instrument, OrderBook
from tradepilot.trading import ledger, risk
from tradepilot.trading.engine import FeeRates, FeeSchedule, MatchingEngine
from tradepilot.trading.engine import Fill as EngineFill
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import LIMIT_TYPES, OrderType
from tradepilot.trading.engine.validation import check_order
from tradepilot.trading.execution import OrderWriter, add, ceil18, mul
from tradepilot.trading.filters import OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.models import AccountStatus, Balance, TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderEvent, OrderStatus
from tradepilot.trading.order_schemas import OrderCreate
from tradepilot.trading.service import TradingService, open_order_counter

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime

ZERO = Decimal(0)
_OPEN = tuple(OrderStatus.OPEN)
_LOADED_USER = "trading.orders.user"  # session.info: the user row read with the account
_MARKET_LIKE = frozenset({OrderType.STOP, OrderType.TAKE_PROFIT, OrderType.TRAILING_STOP})


# --- counters the rest of the platform asks ---------------------------------------------------

@open_order_counter("trading.orders")
async def count_open_orders_of_account(session: AsyncSession, account: TradingAccount) -> int:
    count = await session.scalar(select(func.count()).select_from(Order).where(
        Order.account_id == account.id, Order.status.in_(_OPEN)))
    return int(count or 0)


_OPEN_OF_USER = select(func.count()).select_from(Order).where(  # built once: every order counts them
    Order.user_id == bindparam("user_id"), Order.status.in_(_OPEN))


@usage_counter("open_orders")
async def count_open_orders_of_user(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(_OPEN_OF_USER, {"user_id": user_id})
    return int(count or 0)


# the caller's default account locked and re-read, with its user; built once (every order runs it)
_DEFAULT_ACCOUNT_LOCKED = (
    select(TradingAccount, User).join(User, User.id == TradingAccount.user_id)
    .where(TradingAccount.user_id == bindparam("user_id"), TradingAccount.is_default.is_(True))
    .with_for_update(key_share=True, of=TradingAccount)
    .execution_options(populate_existing=True))


# --- errors ----------------------------------------------------------------------------------

def order_not_found() -> NotFound:
    return NotFound("Order not found.", code="order_not_found")


class DuplicateClientOrderId(Conflict):
    code, title = "duplicate_client_order_id", "Duplicate client order id"

    def __init__(self, client_order_id: str) -> None:
        super().__init__(f"This account already has an order with client_order_id {client_order_id!r}.",
                         extra={"client_order_id": client_order_id})


def live_account_not_supported() -> Unprocessable:
    return Unprocessable("This operation is not available on live accounts yet (docs/exchanges.md).",
                         code="live_account_not_supported")


def _market_data_unavailable(symbol: str, what: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"No {what} for {symbol} yet; try again shortly.", code="market_data_unavailable",
                              extra={"symbol": symbol})


# --- placing ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Prepared:
    """An order that passed the checks needing no database: instrument, shape, filters."""

    body: OrderCreate
    instrument: Instrument
    book: OrderBook | None
    last_price: Decimal | None


def _priority(now: datetime) -> int:
    """Time priority across processes: microseconds since the epoch (FIFO at a price level)."""
    return int(now.timestamp() * 1_000_000)


class OrderService:
    """One per process (``runtime.services["orders"]``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        settings = runtime.settings
        self.rates = FeeRates(maker=settings.paper_maker_fee_rate, taker=settings.paper_taker_fee_rate)
        from tradepilot.trading.live.placement import LivePlacement  # it builds on this module

        self.live = LivePlacement(self)

    @property
    def market(self) -> MarketService:
        return self.runtime.services["market"]  # type: ignore[no-any-return]

    def fee_schedule(self) -> FeeSchedule:
        return FeeSchedule(self.rates)

    def prepare(self, body: OrderCreate) -> Prepared:
        """The checks before the database: instrument (404), shape (422), filters (422)."""
        if body.is_group:  # a bracket or an OCO (order_groups)
            from tradepilot.trading.order_groups import prepare_group

            return prepare_group(self, body)
        market = self.market
        instrument = market.instrument(body.symbol)
        symbol = instrument.symbol
        problem = check_order(self._engine_order(body, symbol, "-", "-"))
        if problem is not None:
            raise Unprocessable(problem[1], code=problem[0])
        if body.trail_percent is not None and -body.trail_percent.as_tuple().exponent > 8:  # type: ignore[operator]
            # the level (mark × (100 − p) / 100) must stay within the 18 decimals of a money column
            raise Unprocessable("trail_percent takes at most 8 decimal places.", code="invalid_trail")
        book = market.order_book(symbol)
        last = market.last_price(symbol)
        reference = None
        if book is not None:
            side = book.asks if body.side == "buy" else book.bids
            reference = side[0][0] if side else None
        check_filters(instrument, OrderAmounts(quantity=body.quantity, price=body.price, stop_price=body.stop_price,
                                               quote_quantity=body.quote_quantity),
                      reference_price=reference or last)
        if body.type == OrderType.MARKET and book is None:
            raise _market_data_unavailable(symbol, "order book")
        if body.type == OrderType.TRAILING_STOP and body.side == "buy" and last is None:
            raise _market_data_unavailable(symbol, "last trade price")  # a buy's reservation needs a level
        return Prepared(body, instrument, book, last)

    @staticmethod
    def _engine_order(body: OrderCreate, symbol: str, order_id: str, account_id: str) -> EngineOrder:
        return EngineOrder(id=order_id, account_id=account_id, symbol=symbol, side=body.side,  # type: ignore[arg-type]
                           type=body.type, quantity=body.quantity,  # type: ignore[arg-type]
                           quote_quantity=body.quote_quantity, price=body.price, stop_price=body.stop_price,
                           trail_amount=body.trail_amount, trail_percent=body.trail_percent,
                           time_in_force=body.time_in_force, post_only=body.post_only)  # type: ignore[arg-type]

    async def resolve_account(self, session: AsyncSession, principal: AuthUser,
                              account_id: uuid.UUID | None, *, allow_live: bool = False) -> TradingAccount:
        """The account to trade from (the default one, opened lazily), locked; 404 if not the caller's.

        A live account is refused (422 ``live_account_not_supported``) unless ``allow_live``:
        only ``trading.live.placement`` may trade one — every other path here is the paper
        engine's, and would record an order the exchange never saw."""
        if account_id is None:
            # the usual case in one statement: the caller's default account, locked and re-read,
            # with its user (plan, own limits) for the risk check, which then finds the user in
            # the session's identity map instead of reading it again; only the account is locked
            found_row = (await session.execute(_DEFAULT_ACCOUNT_LOCKED, {"user_id": principal.id})).first()
            account = None if found_row is None else found_row[0]
            if account is not None:
                # the identity map holds objects weakly: keep the user alive for this transaction
                session.info[_LOADED_USER] = found_row[1]
                if account.status != AccountStatus.ACTIVE:
                    raise ledger.AccountClosed()
                return account
            trading: TradingService = self.runtime.services["trading"]
            await trading.ensure_default_account(session, user_id=principal.id)
            account_id = await session.scalar(select(TradingAccount.id).where(
                TradingAccount.user_id == principal.id, TradingAccount.is_default.is_(True)))
            assert account_id is not None
        found = await session.scalar(select(TradingAccount.user_id).where(TradingAccount.id == account_id))
        if found != principal.id:
            raise NotFound("Trading account not found.", code="account_not_found")
        account = await ledger.lock_account(session, account_id)
        if account.status != AccountStatus.ACTIVE:
            raise ledger.AccountClosed()
        if account.is_live and not allow_live:
            raise live_account_not_supported()
        return account

    async def place(self, session: AsyncSession, principal: AuthUser, prepared: Prepared, *,
                    halt_exempt: bool = False) -> Order:
        """Place the order in the caller's transaction (never commits); returns its row.

        ``halt_exempt``: a reduce-only sale that may go through while the platform is halted
        (the panic button's position closes); anything else is refused as usual.
        """
        if getattr(prepared, "plan", None) is not None:  # a bracket or an OCO: its first order
            from tradepilot.trading.order_groups import place_group

            return await place_group(self, session, principal, prepared)
        body, instrument = prepared.body, prepared.instrument
        symbol, base, quote = instrument.symbol, instrument.base, instrument.quote
        now = self.clock.now()
        if not (halt_exempt and body.reduce_only and body.side == "sell"):
            await ensure_not_halted(session)  # the platform halt: read in this transaction, every replica agrees
        account = await self.resolve_account(session, principal, body.account_id)
        client_order_id = body.client_order_id
        if client_order_id is None:  # a fresh random id cannot be taken: no lookup (the unique key still guards)
            client_order_id = uuid.uuid4().hex
        elif await session.scalar(select(Order.id).where(Order.account_id == account.id,
                                                         Order.client_order_id == client_order_id)) is not None:
            raise DuplicateClientOrderId(client_order_id)

        order_id = uuid.uuid4()
        order = self._engine_order(body, symbol, str(order_id), str(account.id))
        if order.type == OrderType.TRAILING_STOP:
            order.water_mark = prepared.last_price  # the mark starts at the last trade
        engine = MatchingEngine(self.fee_schedule(), [instrument])
        if prepared.book is not None:
            engine.on_book(prepared.book)
        events = engine.place(order, now)
        fills = [e for e in events if isinstance(e, EngineFill)]

        full, used = self._reservation(order, fills)
        reserve = full if order.is_open else used
        balances = await self._check_risk(session, principal, account, order, prepared, fills, cost=full)

        row = Order(id=order_id, account_id=account.id, user_id=principal.id, client_order_id=client_order_id,
                    venue=self.market.venue, symbol=symbol, base_asset=base, quote_asset=quote, side=body.side,
                    type=body.type, time_in_force=body.time_in_force, quantity=body.quantity,
                    quote_quantity=body.quote_quantity, price=body.price, stop_price=body.stop_price,
                    trail_amount=body.trail_amount, trail_percent=body.trail_percent, post_only=body.post_only,
                    reduce_only=body.reduce_only, status=OrderStatus.PENDING_NEW, filled_quantity=ZERO,
                    filled_notional=ZERO, fees=ZERO, fee_asset=quote, reserved=ZERO,
                    reserved_asset=quote if body.side == "buy" else base, revision=0, seq=0, fill_count=0,
                    triggered=False, event_seq=0, created_at=now, updated_at=now)
        # Batched: the balances read for the risk check are the ledger's starting point, the
        # order row is inserted once in its final state (with its events, ledger transactions
        # and fills) by the writer's one flush, and the outbox events go out in one emit_many.
        writer = OrderWriter(session, account, now, batched=True, known={
            b.asset: ledger.KnownBalance(b.free, b.locked, b.version) for b in balances.values()})
        writer.fresh.add(order_id)
        with session.no_autoflush:
            session.add(row)
            await writer.add_event(row, "received", OrderStatus.PENDING_NEW, {
                k: v for k, v in body.model_dump(exclude={"account_id"}).items() if v is not None and v is not False})
            if order.status != OrderStatus.REJECTED:
                await writer.reserve(row, reserve)
            order.seq = _priority(now)
            await writer.apply(row, order, events)
        return row

    def _reservation(self, order: EngineOrder, fills: list[EngineFill]) -> tuple[Decimal, Decimal]:
        """(what the whole order may need, what its fills at placement use), in the reserved asset.

        Buys: quote incl. fees — a limit price's worth at the larger fee rate, a market order's
        exact walk of the book, a stop's trigger level at the taker rate. Sells: base.
        """
        if order.is_buy:
            used = ZERO
            for fill in fills:
                used = add(used, add(mul(fill.price, fill.quantity), fill.fee))
            rate = max(self.rates.maker, self.rates.taker, ZERO)
            if order.type == OrderType.MARKET or order.quantity is None:
                full = used
            elif order.type in LIMIT_TYPES:
                assert order.price is not None
                full = ceil18(mul(mul(order.quantity, order.price), 1 + rate))
            else:  # stop, take_profit, trailing_stop: at its trigger level (topped up at trigger if it gaps)
                level = order.stop_price
                if level is None:
                    raise _market_data_unavailable(order.symbol, "last trade price")
                full = ceil18(mul(mul(order.quantity, level), 1 + max(self.rates.taker, ZERO)))
            return max(full, used), used
        used = ZERO
        for fill in fills:
            used = add(used, fill.quantity)
        return (order.quantity if order.quantity is not None else used), used

    async def _check_risk(self, session: AsyncSession, principal: AuthUser, account: TradingAccount,
                          order: EngineOrder, prepared: Prepared, fills: list[EngineFill], *,
                          cost: Decimal) -> dict[str, Balance]:
        """Raises on a failed pre-trade check; returns the balances it read (under the lock)."""
        instrument = prepared.instrument
        balances = {b.asset: b for b in await ledger.get_balances(session, account.id)}
        quote, base = balances.get(instrument.quote), balances.get(instrument.base)
        user = await session.get(User, principal.id)
        assert user is not None
        own = settings_of(user)
        limits = effective_limits(user.plan, dict(own.limits))
        open_orders = await count_open_orders_of_user(session, principal.id)
        realised_today = ZERO
        if own.risk.daily_loss_limit is not None:  # the query only for users who set the kill switch
            realised_today = await realised_since(session, principal.id, start_of_utc_day(self.clock.now()))
        quantity = order.quantity
        if quantity is None and not order.is_buy:  # a quote-sized sale: what it sells
            quantity = ZERO
            for fill in fills:
                quantity = add(quantity, fill.quantity)
        book = prepared.book
        risk.check_pre_trade(
            risk.OrderIntent(side=order.side.value, type=order.type.value, quantity=quantity,
                             limit_price=order.price if order.type == OrderType.LIMIT else None,
                             quote_quantity=order.quote_quantity, reduce_only=prepared.body.reduce_only),
            risk.AccountSnapshot(free_quote=quote.free if quote else ZERO, free_base=base.free if base else ZERO,
                                 position=base.total if base else ZERO, open_orders=open_orders,
                                 realised_today=realised_today),
            risk.MarketSnapshot(last=prepared.last_price,
                                best_bid=book.bids[0][0] if book is not None and book.bids else None,
                                best_ask=book.asks[0][0] if book is not None and book.asks else None),
            risk.RiskLimits(max_open_orders=limits.open_orders, max_order_notional=own.risk.max_order_notional,
                            max_position_notional=own.risk.max_position_notional,
                            daily_loss_limit=own.risk.daily_loss_limit),
            cost=cost)
        return balances

    # --- cancelling --------------------------------------------------------------------------

    async def cancel(self, session: AsyncSession, row: Order) -> Order:
        """Cancel an open order (409 ``order_not_open`` if it already ended); releases what it holds.

        The account lock orders this against the matching owner's fills: whichever commits
        first wins, the other sees the order's new status (the owner then drops the order).
        """
        account = await ledger.lock_account(session, row.account_id)
        current = await session.scalar(select(Order).where(Order.id == row.id)
                                       .execution_options(populate_existing=True))
        if current is None:
            raise order_not_found()
        if not current.is_open:
            raise Conflict(f"The order is already {current.status}.", code="order_not_open",
                           extra={"status": current.status})
        if account.is_live:  # the exchange cancels first (trading.live.placement), never this path
            raise live_account_not_supported()
        if current.group_id is not None:  # a bracket's or an OCO's order: the group rules apply
            from tradepilot.trading.order_groups import cancel_in_group

            return await cancel_in_group(self, session, account, current)
        writer = OrderWriter(session, account, self.clock.now())
        await writer.close(current, OrderStatus.CANCELED, reason="canceled_by_user")
        return current

    # --- reading ----------------------------------------------------------------------------

    async def list_orders(self, session: AsyncSession, *, user_id: uuid.UUID, status: str | None,
                          symbol: str | None, account_id: uuid.UUID | None, limit: int,
                          cursor: str | None, group_id: uuid.UUID | None = None) -> tuple[list[Order], str | None]:
        """Newest first. ``status`` may be ``open`` (pending_new, new, partially_filled)."""
        query = select(Order).where(Order.user_id == user_id)
        if group_id is not None:
            query = query.where(Order.group_id == group_id)
        if status == "open":
            query = query.where(Order.status.in_(_OPEN))
        elif status is not None:
            query = query.where(Order.status == status)
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        if account_id is not None:
            query = query.where(Order.account_id == account_id)
        return await time_keyset_page(session, query, Order.created_at, Order.id, limit=limit, cursor=cursor)

    async def order_events(self, session: AsyncSession, *, order: Order, limit: int,
                           cursor: str | None) -> tuple[list[OrderEvent], str | None]:
        """Oldest first."""
        query = select(OrderEvent).where(OrderEvent.order_id == order.id)
        if cursor is not None:
            query = query.where(OrderEvent.seq > decode_seq_cursor(cursor))
        rows = list(await session.scalars(query.order_by(OrderEvent.seq).limit(limit + 1)))
        if len(rows) > limit:
            return rows[:limit], seq_cursor(rows[limit - 1].seq)
        return rows, None

    async def list_fills(self, session: AsyncSession, *, user_id: uuid.UUID, symbol: str | None,
                         account_id: uuid.UUID | None, order_id: uuid.UUID | None, limit: int,
                         cursor: str | None) -> tuple[list[Fill], str | None]:
        """Newest first."""
        query = select(Fill).where(Fill.user_id == user_id)
        if symbol is not None:
            query = query.where(Fill.symbol == symbol)
        if account_id is not None:
            query = query.where(Fill.account_id == account_id)
        if order_id is not None:
            query = query.where(Fill.order_id == order_id)
        return await time_keyset_page(session, query, Fill.created_at, Fill.id, limit=limit, cursor=cursor)

    async def live_account(self, principal: AuthUser, account_id: uuid.UUID | None) -> TradingAccount | None:
        """The caller's live account ``account_id`` (detached, read without any lock), or None
        for anything else — a paper account, the default one, someone else's (which the usual
        path then answers 404)."""
        if account_id is None:
            return None
        async with self.runtime.db.read() as session:
            account = await session.get(TradingAccount, account_id)
            if account is None or account.user_id != principal.id or not account.is_live:
                return None
            session.expunge(account)
            return account

    async def check_account(self, session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
        await check_account_filter(session, user_id, account_id)


async def check_account_filter(session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
    """404 ``account_not_found`` for an ``account_id`` filter naming an account that is not the caller's."""
    if account_id is None:
        return
    owner = await session.scalar(select(TradingAccount.user_id).where(TradingAccount.id == account_id))
    if owner != user_id:
        raise NotFound("Trading account not found.", code="account_not_found")


def start_of_utc_day(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


async def realised_since(session: AsyncSession, user_id: uuid.UUID, since: datetime) -> Decimal:
    """Realised P&L minus fees of the user's fills since ``since`` (summed exactly, in Python)."""
    rows = await session.execute(select(Fill.realised_pnl, Fill.fee).where(Fill.user_id == user_id,
                                                                           Fill.created_at >= since))
    total = ZERO
    for pnl, fee in rows:
        total = add(total, pnl or ZERO)
        total = add(total, fee.copy_negate())
    return total
