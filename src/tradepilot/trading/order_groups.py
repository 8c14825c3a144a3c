"""Brackets and OCO pairs of the paper exchange: placing them, and writing their orders' events
together with one shared reservation (docs/orders.md, "Brackets and OCO").

A **bracket** is a buy entry plus a take-profit and/or a stop-loss exit that sell what the entry
bought: the exits wait (``pending_new``, quantity 0) until the entry's first fill, every entry
fill sizes them to the entry's filled quantity, and the first exit to fill or trigger cancels
the other. An **OCO** is two legs on one side, both working from the start: the first fill or
trigger of one cancels the other. The rules are the matching engine's (``engine.linkage``);
this module persists them.

**One reservation for the exits.** Only one exit of a group can ever sell (or buy), so the
group's exits share one reservation, held by one of them (the *holder*: the take-profit while
it is open, else the stop-loss), sized to the largest need among the open exits — for sell
exits the base still to sell, once, not twice. Every write of a group's orders goes through
:class:`GroupWriter` in one transaction: it pools what the exits hold, lets a filling exit pay
from the pool, and at the end re-sizes the holder's reservation to what the open exits need,
locking more from ``free`` or releasing the rest — through the ledger, so ``locked`` stays
exactly the sum of the open orders' ``reserved``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.market.types import Instrument, OrderBook
from tradepilot.trading import ledger, risk
from tradepilot.trading.engine import EngineEvent, FeeRates, GroupKind, MatchingEngine, OrderGroup
from tradepilot.trading.engine import Fill as EngineFill
from tradepilot.trading.engine import Order as EngineOrder
from tradepilot.trading.engine.orders import LIMIT_TYPES, OrderType
from tradepilot.trading.engine.snapshot import EngineSnapshot, MarketSnapshot
from tradepilot.trading.engine.validation import check_leg, check_order
from tradepilot.trading.execution import OrderWriter, add, ceil18, events_by_order, mul, order_reference, sub
from tradepilot.trading.filters import FilterViolation, OrderAmounts, check_filters
from tradepilot.trading.halt import ensure_not_halted
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Order, OrderStatus
from tradepilot.trading.order_schemas import ExitLeg, OrderCreate
from tradepilot.trading.orders import (
    DuplicateClientOrderId,
    Prepared,
    _priority,
    count_open_orders_of_user,
)

if TYPE_CHECKING:
    from tradepilot.trading.orders import OrderService

ZERO = Decimal(0)
ENTRY, TAKE_PROFIT, STOP_LOSS = "entry", "take_profit", "stop_loss"
BRACKET, OCO = "bracket", "oco"
EXIT_ROLES = frozenset({TAKE_PROFIT, STOP_LOSS})
_ROLE_ORDER = {ENTRY: 0, TAKE_PROFIT: 1, STOP_LOSS: 2}


# --- reservations ---------------------------------------------------------------------------------

def reservation_need(*, side: str, type_: str, quantity: Decimal | None, filled: Decimal, price: Decimal | None,
                     stop_price: Decimal | None, rates: FeeRates) -> Decimal:
    """What an open order must keep locked for the rest of its quantity: a sale its base; a buy
    the quote at its limit price and the larger fee rate, or at its trigger level and the
    taker rate (as at placement: ``OrderService._reservation``)."""
    if quantity is None:
        return ZERO
    remaining = sub(quantity, filled)
    if remaining <= 0:
        return ZERO
    if side == "sell":
        return remaining
    if type_ in LIMIT_TYPES:
        level, rate = price, max(rates.maker, rates.taker, ZERO)
    else:
        level, rate = stop_price, max(rates.taker, ZERO)
    if level is None:
        return ZERO
    return ceil18(mul(mul(remaining, level), 1 + rate))


def row_need(row: Order, rates: FeeRates) -> Decimal:
    return reservation_need(side=row.side, type_=row.type, quantity=row.quantity, filled=row.filled_quantity,
                            price=row.price, stop_price=row.stop_price, rates=rates)


def _holder_key(row: Order) -> tuple[int, str]:
    return _ROLE_ORDER.get(row.group_role or "", 9), str(row.id)


class GroupWriter(OrderWriter):
    """Writes one engine call's events of the orders of one group, in one transaction.

    ``members`` are all the group's rows (read under the account's lock). Construction pools
    what the exits hold; :meth:`apply` works as for any order (an exit's fill pays from the pool
    first); :meth:`complete` re-sizes the shared reservation and then finishes every touched
    order (release of a final entry's rest, the outbox events) in that order.
    """

    def __init__(self, session: AsyncSession, account: TradingAccount, now: datetime, rates: FeeRates,
                 members: Sequence[Order]) -> None:
        super().__init__(session, account, now)
        self.rates = rates
        self.exits = sorted((m for m in members if m.group_role in EXIT_ROLES), key=_holder_key)
        self._exit_ids = {row.id for row in self.exits}
        self.pool = ZERO
        for row in self.exits:
            self.pool = add(self.pool, row.reserved)
            row.reserved = ZERO
        self._finishing: list[Order] = []

    async def finish(self, row: Order) -> None:  # deferred until the reservation is re-sized
        if row not in self._finishing:
            self._finishing.append(row)

    async def _settle(self, row: Order, fill: EngineFill) -> None:
        if row.id in self._exit_ids and self.pool > 0:
            needed = fill.quantity if row.side == "sell" else add(mul(fill.price, fill.quantity), fill.fee)
            if needed > row.reserved:
                take = min(self.pool, sub(needed, row.reserved))
                row.reserved = add(row.reserved, take)
                self.pool = sub(self.pool, take)
        await super()._settle(row, fill)  # tops up from free what the pool could not cover

    async def complete(self) -> None:
        """Re-size the exits' shared reservation to what the open exits need, then finish."""
        pool = self.pool
        for row in self.exits:
            pool = add(pool, row.reserved)
            row.reserved = ZERO
        open_exits = [row for row in self.exits if row.is_open]
        target = max((row_need(row, self.rates) for row in open_exits), default=ZERO)
        if self.exits:
            holder = open_exits[0] if open_exits else self.exits[0]
            asset = holder.reserved_asset
            if target > pool:
                await ledger.reserve(self.session, self.account, asset, sub(target, pool), now=self.now,
                                     reference=order_reference(holder))
            elif pool > target:
                await ledger.release(self.session, self.account, asset, sub(pool, target), now=self.now,
                                     reference=order_reference(holder))
            if open_exits:
                holder.reserved = target
                if holder not in self._finishing:
                    self._finishing.append(holder)
        self.pool = ZERO
        for row in self._finishing:
            await OrderWriter.finish(self, row)
        self._finishing.clear()


# --- groups from rows ------------------------------------------------------------------------------

def group_of(rows: Iterable[Order]) -> OrderGroup:
    """The engine's group of persisted orders (all of the group's rows, closed ones included)."""
    members = sorted(rows, key=_holder_key)
    first = members[0]
    assert first.group_id is not None and first.group_kind is not None
    entry = next((r for r in members if r.group_role == ENTRY), None)
    return OrderGroup(str(first.group_id), GroupKind(first.group_kind), None if entry is None else str(entry.id),
                      tuple(str(r.id) for r in members if r.group_role in EXIT_ROLES))


async def group_rows(session: AsyncSession, group_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[Order]]:
    """Every row of these groups, freshly read (call with the account locked to write them)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    out: dict[uuid.UUID, list[Order]] = {gid: [] for gid in ids}
    rows = await session.scalars(select(Order).where(Order.group_id.in_(ids))
                                 .execution_options(populate_existing=True))
    for row in rows:
        assert row.group_id is not None
        out[row.group_id].append(row)
    return out


def transient_engine(service: OrderService, instrument: Instrument | None, book: OrderBook | None,
                     last: Decimal | None) -> MatchingEngine:
    """A matching engine for one request: the symbol's current book and last trade price."""
    markets = () if instrument is None else (MarketSnapshot(instrument.symbol, book, last),)
    snapshot = EngineSnapshot(orders=(), groups=(), markets=markets, seq=0, now=None)
    return MatchingEngine.restore(snapshot, service.fee_schedule(), [] if instrument is None else [instrument])


def load_rows(engine: MatchingEngine, rows: Iterable[Order],
              groups: dict[uuid.UUID, list[Order]]) -> dict[str, EngineOrder]:
    """Load open rows (with their groups) into a transient engine; their engine orders by id."""
    from tradepilot.trading.execution import to_engine

    orders = {str(row.id): to_engine(row) for row in rows if row.is_open}
    wanted = {row.group_id for row in rows if row.group_id is not None and row.is_open}
    engine.load(orders.values(), [group_of(groups[gid]) for gid in sorted(wanted) if groups.get(gid)])
    return orders


async def write_events(session: AsyncSession, account: TradingAccount, now: datetime, rates: FeeRates,
                       events: Sequence[EngineEvent], orders: dict[str, tuple[Order, EngineOrder]],
                       groups: dict[uuid.UUID, list[Order]]) -> None:
    """Persist one engine call's events of one (locked) account: an ungrouped order through
    :class:`OrderWriter`, the orders of one group together through :class:`GroupWriter`."""
    units: dict[uuid.UUID, list[tuple[Order, EngineOrder, list[EngineEvent]]]] = {}
    for order_id, own in events_by_order(events).items():
        pair = orders.get(order_id)
        if pair is None:
            continue
        row, order = pair
        units.setdefault(row.group_id or row.id, []).append((row, order, own))
    for key, members in units.items():
        if members[0][0].group_id is None:
            row, order, own = members[0]
            await OrderWriter(session, account, now).apply(row, order, own)
            continue
        writer = GroupWriter(session, account, now, rates, groups[key])
        for row, order, own in members:
            await writer.apply(row, order, own)
        await writer.complete()


# --- placing -------------------------------------------------------------------------------------

@dataclass(slots=True)
class LegSpec:
    role: str
    type: str
    side: str
    price: Decimal | None
    stop_price: Decimal | None
    trail_amount: Decimal | None
    trail_percent: Decimal | None
    time_in_force: str
    client_order_id: str | None

    def engine_order(self, order_id: str, account_id: str, symbol: str, quantity: Decimal | None) -> EngineOrder:
        return EngineOrder(id=order_id, account_id=account_id, symbol=symbol, side=self.side,  # type: ignore[arg-type]
                           type=self.type, quantity=quantity, price=self.price,  # type: ignore[arg-type]
                           stop_price=self.stop_price, trail_amount=self.trail_amount,
                           trail_percent=self.trail_percent, time_in_force=self.time_in_force)  # type: ignore[arg-type]


@dataclass(slots=True)
class GroupPlan:
    """A bracket or OCO that passed the checks needing no database."""

    kind: str
    entry: Prepared | None  # a bracket's entry, prepared like any order
    legs: list[LegSpec] = field(default_factory=list)


def _leg_type(role: str, leg: ExitLeg) -> str:
    trail = leg.trail_amount is not None or leg.trail_percent is not None
    if role == TAKE_PROFIT:
        if trail:
            raise Unprocessable("A take-profit takes price and/or stop_price, not a trail.", code="invalid_exit_type",
                                extra={"field": role})
        if leg.stop_price is None:
            if leg.price is None:
                raise Unprocessable("A take-profit needs a price or a stop_price.", code="invalid_exit_type",
                                    extra={"field": role})
            return OrderType.LIMIT
        return OrderType.TAKE_PROFIT if leg.price is None else OrderType.TAKE_PROFIT_LIMIT
    if trail:
        if leg.price is not None or leg.stop_price is not None:
            raise Unprocessable("A trailing stop-loss takes only its trail.", code="invalid_exit_type",
                                extra={"field": role})
        return OrderType.TRAILING_STOP
    if leg.stop_price is None:
        raise Unprocessable("A stop-loss needs a stop_price (or a trail).", code="invalid_exit_type",
                            extra={"field": role})
    return OrderType.STOP if leg.price is None else OrderType.STOP_LIMIT


def _leg_spec(role: str, leg: ExitLeg, side: str, default_tif: str) -> LegSpec:
    return LegSpec(role=role, type=_leg_type(role, leg), side=side, price=leg.price, stop_price=leg.stop_price,
                   trail_amount=leg.trail_amount, trail_percent=leg.trail_percent,
                   time_in_force=leg.time_in_force or default_tif, client_order_id=leg.client_order_id)


def _check_leg_filters(instrument: Instrument, spec: LegSpec, quantity: Decimal | None,
                       reference: Decimal | None) -> None:
    try:
        check_filters(instrument, OrderAmounts(quantity=quantity, price=spec.price, stop_price=spec.stop_price),
                      reference_price=reference)
    except FilterViolation as exc:  # name the leg: "take_profit.price"
        if "field" in exc.extra:
            exc.extra["field"] = f"{spec.role}.{exc.extra['field']}"
        raise
    if spec.trail_percent is not None and -spec.trail_percent.as_tuple().exponent > 8:  # type: ignore[operator]
        raise Unprocessable("trail_percent takes at most 8 decimal places.", code="invalid_trail",
                            extra={"field": f"{spec.role}.trail_percent"})


def prepare_group(service: OrderService, body: OrderCreate) -> Prepared:
    """The checks before the database for a bracket or an OCO: shape, filters, market data."""
    market = service.market
    instrument = market.instrument(body.symbol)
    symbol = instrument.symbol
    book, last = market.order_book(symbol), market.last_price(symbol)
    if body.type == OCO:
        plan = _plan_oco(body)
        anchor = None
        quantity = body.quantity
    else:
        if body.side != "buy":
            raise Unprocessable("A bracket's entry is a buy on a spot account: its exits sell what it bought. "
                                "To protect coins you hold, use an OCO.", code="bracket_entry_must_buy")
        entry = service.prepare(body.model_copy(update={"take_profit": None, "stop_loss": None}))
        default_tif = "day" if body.time_in_force == "day" else "gtc"
        plan = GroupPlan(BRACKET, entry, [_leg_spec(role, leg, "sell", default_tif) for role, leg in (
            (TAKE_PROFIT, body.take_profit), (STOP_LOSS, body.stop_loss)) if leg is not None])
        anchor = service._engine_order(body, symbol, "-", "-")
        quantity = body.quantity
    first: EngineOrder | None = None
    for spec in plan.legs:
        leg = spec.engine_order("-", "-", symbol, None if plan.kind == BRACKET else quantity)
        problem = check_order(leg, sized_by_entry=plan.kind == BRACKET)
        if problem is None:
            problem = check_leg(leg, anchor or first or leg, same_side=plan.kind == OCO)
        if problem is not None:
            raise Unprocessable(f"{spec.role}: {problem[1]}", code=problem[0], extra={"field": spec.role})
        first = first or leg
        _check_leg_filters(instrument, spec, quantity, last)
        if plan.kind == OCO and spec.side == "buy" and spec.type == OrderType.TRAILING_STOP and last is None:
            raise ServiceUnavailable(f"No last trade price for {symbol} yet; try again shortly.",
                                     code="market_data_unavailable", extra={"symbol": symbol})
    return PreparedGroup(body, instrument, book, last, plan)


def _plan_oco(body: OrderCreate) -> GroupPlan:
    if body.take_profit is None or body.stop_loss is None:
        raise Unprocessable("An OCO needs a take_profit (its limit leg) and a stop_loss (its stop leg).",
                            code="oco_legs_required")
    for name, code in (("quote_quantity", "quote_quantity_requires_market"), ("price", "price_not_allowed"),
                       ("stop_price", "stop_price_not_allowed"), ("trail_amount", "trail_not_allowed"),
                       ("trail_percent", "trail_not_allowed")):
        if getattr(body, name) is not None:
            raise Unprocessable(f"An OCO takes {name} in its legs, not at the top.", code=code,
                                extra={"field": name})
    if body.quantity is None:
        raise Unprocessable("An OCO needs a quantity (both legs share it).", code="invalid_quantity")
    if body.time_in_force not in ("gtc", "day"):
        raise Unprocessable("OCO legs must be able to wait (gtc or day).", code="invalid_time_in_force")
    if body.post_only:
        raise Unprocessable("post_only is not available for OCO legs.", code="invalid_post_only")
    return GroupPlan(OCO, None, [_leg_spec(TAKE_PROFIT, body.take_profit, body.side, body.time_in_force),
                                 _leg_spec(STOP_LOSS, body.stop_loss, body.side, body.time_in_force)])


@dataclass(slots=True)
class PreparedGroup(Prepared):
    plan: GroupPlan | None = None


def plan_of(prepared: Prepared) -> GroupPlan | None:
    return getattr(prepared, "plan", None)


async def place_group(service: OrderService, session: AsyncSession, principal: AuthUser,
                      prepared: Prepared) -> Order:
    """Place a bracket or an OCO in the caller's transaction; returns its first order (the
    bracket's entry, the OCO's take-profit leg). Its other orders: :func:`legs_of`."""
    plan = plan_of(prepared)
    assert plan is not None
    body, instrument = prepared.body, prepared.instrument
    symbol, base, quote = instrument.symbol, instrument.base, instrument.quote
    now = service.clock.now()
    await ensure_not_halted(session)
    account = await service.resolve_account(session, principal, body.account_id)
    aid = str(account.id)

    roles = ([ENTRY] if plan.kind == BRACKET else []) + [spec.role for spec in plan.legs]
    cids = ([body.client_order_id or uuid.uuid4().hex] if plan.kind == BRACKET else [])
    for index, spec in enumerate(plan.legs):
        top = body.client_order_id if plan.kind == OCO and index == 0 else None
        cids.append(spec.client_order_id or top or uuid.uuid4().hex)
    seen: set[str] = set()
    for cid in cids:
        if cid in seen:
            raise DuplicateClientOrderId(cid)
        seen.add(cid)
    used = await session.scalar(select(Order.client_order_id).where(Order.account_id == account.id,
                                                                      Order.client_order_id.in_(cids)))
    if used is not None:
        raise DuplicateClientOrderId(used)

    group_id = uuid.uuid4()
    ids = [uuid.uuid4() for _ in roles]
    engine = transient_engine(service, instrument, prepared.book, prepared.last_price)
    orders: list[EngineOrder] = []
    if plan.kind == BRACKET:
        entry = service._engine_order(body, symbol, str(ids[0]), aid)
        if entry.type == OrderType.TRAILING_STOP:
            entry.water_mark = prepared.last_price
        exits = {spec.role: spec.engine_order(str(ids[i + 1]), aid, symbol, None) for i, spec in enumerate(plan.legs)}
        orders = [entry, *exits.values()]
        events = engine.place_bracket(str(group_id), entry, now, take_profit=exits.get(TAKE_PROFIT),
                                      stop_loss=exits.get(STOP_LOSS))
    else:
        orders = [spec.engine_order(str(ids[i]), aid, symbol, body.quantity) for i, spec in enumerate(plan.legs)]
        events = engine.place_oco(str(group_id), orders[0], orders[1], now)

    entry_reserve = await _check_group_risk(service, session, principal, account, prepared, plan, orders, events)

    rows: list[Order] = []
    for order_id, order, role, cid in zip(ids, orders, roles, cids, strict=True):
        rows.append(Order(
            id=order_id, account_id=account.id, user_id=principal.id, client_order_id=cid, venue=service.market.venue,
            symbol=symbol, base_asset=base, quote_asset=quote, side=order.side.value, type=order.type.value,
            time_in_force=order.time_in_force.value, quantity=order.quantity if role == ENTRY or plan.kind == OCO
            else ZERO, quote_quantity=order.quote_quantity, price=order.price, stop_price=order.stop_price,
            trail_amount=order.trail_amount, trail_percent=order.trail_percent, post_only=order.post_only,
            reduce_only=body.reduce_only if plan.kind == OCO else False, status=OrderStatus.PENDING_NEW,
            filled_quantity=ZERO, filled_notional=ZERO, fees=ZERO, fee_asset=quote, reserved=ZERO,
            reserved_asset=quote if order.side.value == "buy" else base, revision=0, seq=0, fill_count=0,
            triggered=False, event_seq=0, group_id=group_id, group_kind=plan.kind, group_role=role,
            created_at=now, updated_at=now))
    session.add_all(rows)
    await session.flush()
    writer = GroupWriter(session, account, now, service.rates, rows)
    for row in rows:
        await writer.add_event(row, "received", OrderStatus.PENDING_NEW, _received_detail(row, plan.kind))
    if plan.kind == BRACKET and entry_reserve > 0 and orders[0].status != OrderStatus.REJECTED:
        await writer.reserve(rows[0], entry_reserve)
    priority = _priority(now)
    for index, order in enumerate(orders):
        order.seq = priority + index  # time priority across processes, in the group's order
    per_order = events_by_order(events)
    by_id = {str(row.id): (row, order) for row, order in zip(rows, orders, strict=True)}
    for order_id, own in per_order.items():
        row, order = by_id[order_id]
        await writer.apply(row, order, own)
    for row, order in zip(rows, orders, strict=True):
        if str(row.id) not in per_order:  # cannot happen (every order is accepted or rejected)
            await writer.apply(row, order, [])
    await writer.complete()
    return rows[0]


def _received_detail(row: Order, kind: str) -> dict[str, Any]:
    detail = {"symbol": row.symbol, "side": row.side, "type": row.type, "quantity": row.quantity,
              "quote_quantity": row.quote_quantity, "price": row.price, "stop_price": row.stop_price,
              "trail_amount": row.trail_amount, "trail_percent": row.trail_percent,
              "time_in_force": row.time_in_force, "client_order_id": row.client_order_id,
              "group_id": row.group_id, "group_kind": kind, "group_role": row.group_role}
    return {k: v for k, v in detail.items() if v is not None}


async def _check_group_risk(service: OrderService, session: AsyncSession, principal: AuthUser,
                            account: TradingAccount, prepared: Prepared, plan: GroupPlan,
                            orders: list[EngineOrder], events: list[EngineEvent]) -> Decimal:
    """Pre-trade risk for the whole group; returns what a bracket's entry reserves."""
    instrument, book = prepared.instrument, prepared.book
    balances = {b.asset: b for b in await ledger.get_balances(session, account.id)}
    quote, base = balances.get(instrument.quote), balances.get(instrument.base)
    user = await session.get(User, principal.id)
    assert user is not None
    limits = effective_limits(user.plan, dict(settings_of(user).limits))
    open_orders = await count_open_orders_of_user(session, principal.id) + len(orders) - 1
    entry_reserve = ZERO
    first = orders[0]
    if plan.kind == BRACKET:
        fills = [e for e in events if isinstance(e, EngineFill) and e.order_id == first.id]
        full, used = service._reservation(first, fills)
        entry_reserve = full if first.is_open else used
        cost = full
        quantity = first.quantity
    else:
        quantity = first.quantity
        rates = service.rates
        cost = max(reservation_need(side=o.side.value, type_=o.type.value, quantity=o.quantity, filled=ZERO,
                                    price=o.price, stop_price=o.stop_price, rates=rates) for o in orders) \
            if first.is_buy else ZERO
    # the price collar looks at the limit price on the group's own side: the entry's, or an OCO's limit leg
    limit_leg = next((o for o in (orders[:1] if plan.kind == BRACKET else orders) if o.type == OrderType.LIMIT),
                     None)
    risk.check_pre_trade(
        risk.OrderIntent(side=first.side.value, type=first.type.value, quantity=quantity,
                         limit_price=None if limit_leg is None else limit_leg.price,
                         quote_quantity=first.quote_quantity, reduce_only=prepared.body.reduce_only),
        risk.AccountSnapshot(free_quote=quote.free if quote else ZERO, free_base=base.free if base else ZERO,
                             position=base.total if base else ZERO, open_orders=open_orders, realised_today=ZERO),
        risk.MarketSnapshot(last=prepared.last_price,
                            best_bid=book.bids[0][0] if book is not None and book.bids else None,
                            best_ask=book.asks[0][0] if book is not None and book.asks else None),
        risk.RiskLimits(max_open_orders=limits.open_orders),
        cost=cost)
    return entry_reserve


async def legs_of(session: AsyncSession, row: Order) -> list[Order]:
    """The other orders of ``row``'s group, take-profit first."""
    if row.group_id is None:
        return []
    rows = await session.scalars(select(Order).where(Order.group_id == row.group_id, Order.id != row.id))
    return sorted(rows, key=_holder_key)


# --- cancelling --------------------------------------------------------------------------------------

async def cancel_in_group(service: OrderService, session: AsyncSession, account: TradingAccount,
                          row: Order) -> Order:
    """Cancel a grouped order by the group rules (an exit takes its group with it; an entry
    that never filled takes its exits), in the caller's transaction, under the account's lock."""
    assert row.group_id is not None
    now = service.clock.now()
    groups = await group_rows(session, [row.group_id])
    engine = transient_engine(service, None, None, None)
    orders = load_rows(engine, groups[row.group_id], groups)
    events = engine.cancel(str(row.id), now)
    rows = {str(r.id): r for r in groups[row.group_id]}
    await write_events(session, account, now, service.rates, events,
                       {oid: (rows[oid], order) for oid, order in orders.items()}, groups)
    return row

