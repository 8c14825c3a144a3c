"""The paper exchange's matching engine: user orders against the live market, in process.

Pure and deterministic: no I/O, no clock (time arrives with each call), no randomness. The
same calls in the same order give the same events. Each public call returns the list of
events it caused, for the caller to persist in one transaction. One engine serves one venue;
symbols are independent of each other.

Balances are not checked here (the caller's risk layer does that before ``place``); what the
engine guarantees is that no fill exceeds an order's quantity (or quote budget) and that no
fill is worse than the order's limit price.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from tradepilot.market.types import Instrument, OrderBook, Trade
from tradepilot.trading.engine.core import Core
from tradepilot.trading.engine.events import (
    EngineEvent,
    ModifyRejected,
    OrderModified,
    OrderRejected,
)
from tradepilot.trading.engine.fees import FeeSchedule
from tradepilot.trading.engine.groups import GroupKind, OrderGroup
from tradepilot.trading.engine.orders import (
    CONDITIONAL_TYPES,
    LegRole,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from tradepilot.trading.engine.snapshot import EngineSnapshot, MarketSnapshot, copy_order
from tradepilot.trading.engine.triggers import trail_level
from tradepilot.trading.engine.validation import Problem, check_leg, check_modify, check_order


class UnknownOrderError(KeyError):
    """No open order with this id (never placed, or already closed)."""


class DuplicateOrderError(ValueError):
    """An open order or group already has this id."""


_TAKE_PROFIT_EXITS = frozenset({OrderType.LIMIT, OrderType.TAKE_PROFIT,
                                OrderType.TAKE_PROFIT_LIMIT})
_STOP_LOSS_EXITS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


class MatchingEngine:
    def __init__(self, fees: FeeSchedule | None = None,
                 instruments: Iterable[Instrument] = ()) -> None:
        self._core = Core(fees or FeeSchedule(),
                          {i.symbol: (i.quote, i.step_size) for i in instruments})

    @property
    def fees(self) -> FeeSchedule:
        return self._core.fees

    # -- market data ----------------------------------------------------------------------
    def on_book(self, book: OrderBook) -> list[EngineEvent]:
        """A new L2 book: takers see it from now on (and each account's taken liquidity resets)."""
        out: list[EngineEvent] = []
        self._core.clock(book.ts, out)
        self._core.state(book.symbol).market.set_book(book)
        return out

    def on_trade(self, trade: Trade) -> list[EngineEvent]:
        """A market trade: fills resting limits it reached, fires stops it crossed."""
        out: list[EngineEvent] = []
        ts = self._core.clock(trade.ts, out)
        self._core.on_trade(trade, ts, out)
        return out

    def advance(self, now: datetime) -> list[EngineEvent]:
        """Let time pass without market data (expires day orders that are due)."""
        out: list[EngineEvent] = []
        self._core.clock(now, out)
        return out

    # -- orders ---------------------------------------------------------------------------
    def place(self, order: Order, now: datetime) -> list[EngineEvent]:
        """Accept and work a new order (status ``pending_new``, nothing filled), or reject it."""
        core = self._core
        self._check_fresh(order)  # caller mistakes raise before anything happens
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        problem = check_order(order) or self._market_problem(order)
        if problem is not None:
            self._reject(order, problem, ts, out)
            return out
        core.accept(order, OrderStatus.NEW, ts, out)
        core.work(order, ts, out)
        return out

    def place_oco(self, group_id: str, first: Order, second: Order,
                  now: datetime) -> list[EngineEvent]:
        """Two legs on the same side; the first fill or trigger of one cancels the other."""
        core = self._core
        legs = [first, second]
        self._check_group(group_id, legs)
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        problems = [check_order(leg) or check_leg(leg, first, same_side=True)
                    for leg in legs]
        if any(problems):
            self._reject_group(legs, problems, ts, out)
            return out
        problems = [self._market_problem(leg) for leg in legs]
        if any(problems):
            self._reject_group(legs, problems, ts, out)
            return out
        group = OrderGroup(group_id, GroupKind.OCO, None, (first.id, second.id))
        core.groups[group_id] = group
        for leg in legs:
            leg.group_id, leg.role = group_id, LegRole.LEG
            core.accept(leg, OrderStatus.NEW, ts, out)
        for leg in legs:
            if leg.is_open:
                core.work(leg, ts, out)
        return out

    def place_bracket(self, group_id: str, entry: Order, now: datetime, *,
                      take_profit: Order | None = None,
                      stop_loss: Order | None = None) -> list[EngineEvent]:
        """An entry plus exits on the other side, sized by (and activated on) the entry's fills.

        Exits are given with ``quantity=None``; ``take_profit`` is a limit, take_profit or
        take_profit_limit order, ``stop_loss`` a stop, stop_limit or trailing_stop order.
        """
        core = self._core
        exits = [leg for leg in (take_profit, stop_loss) if leg is not None]
        legs = [entry, *exits]
        self._check_group(group_id, legs)
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        problems: list[Problem | None] = [check_order(entry) or self._market_problem(entry)]
        for leg, allowed in ((take_profit, _TAKE_PROFIT_EXITS), (stop_loss, _STOP_LOSS_EXITS)):
            if leg is None:
                continue
            wrong_type = None if leg.type in allowed else (
                "invalid_exit_type", f"a {leg.type} order cannot be this exit")
            problems.append(check_order(leg, sized_by_entry=True)
                            or check_leg(leg, entry, same_side=False) or wrong_type)
        if not exits:
            problems[0] = problems[0] or ("exit_required",
                                          "a bracket needs a take-profit or a stop-loss")
        if any(problems):
            self._reject_group(legs, problems, ts, out)
            return out
        group = OrderGroup(group_id, GroupKind.BRACKET, entry.id, tuple(leg.id for leg in exits))
        core.groups[group_id] = group
        entry.group_id, entry.role = group_id, LegRole.ENTRY
        core.accept(entry, OrderStatus.NEW, ts, out)
        for leg, role in ((take_profit, LegRole.TAKE_PROFIT), (stop_loss, LegRole.STOP_LOSS)):
            if leg is not None:
                leg.group_id, leg.role, leg.quantity = group_id, role, Decimal(0)
                core.accept(leg, OrderStatus.PENDING_NEW, ts, out)
        core.work(entry, ts, out)
        return out

    def cancel(self, order_id: str, now: datetime,
               reason: str = "canceled_by_user") -> list[EngineEvent]:
        """Cancel an open order (and, by the group rules, its group). Unknown ids raise
        :class:`UnknownOrderError` before anything happens."""
        core = self._core
        order = core.orders.get(order_id)
        if order is None:
            raise UnknownOrderError(order_id)
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        if order.is_open:  # else it expired at this very call: its OrderExpired is in ``out``
            core.close(order, OrderStatus.CANCELED, reason, ts, out)
        return out

    def cancel_all(self, account_id: str, now: datetime, symbol: str | None = None,
                   reason: str = "canceled_by_user") -> list[EngineEvent]:
        """Cancel every open order of the account (of one symbol), earliest first."""
        core = self._core
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        targets = sorted((o for o in core.orders.values() if o.account_id == account_id
                          and (symbol is None or o.symbol == symbol)), key=lambda o: o.seq)
        for order in targets:
            if order.is_open:
                core.close(order, OrderStatus.CANCELED, reason, ts, out)
        return out

    def modify(self, order_id: str, now: datetime, *, price: Decimal | None = None,
               quantity: Decimal | None = None,
               stop_price: Decimal | None = None, trail_amount: Decimal | None = None,
               trail_percent: Decimal | None = None) -> list[EngineEvent]:
        """Change an open order in place: same id, ``revision`` + 1.

        It keeps its time priority when only its quantity goes down; a new price or stop
        price, or a larger quantity, sends it to the back of the queue (a new ``seq``) — and a
        new limit price that crosses the book takes liquidity like a new order would. A
        trailing stop's new trail (``trail_amount`` or ``trail_percent``, replacing the one it
        had) moves its level at once from the water mark kept so far, and loses priority.
        """
        core = self._core
        order = core.orders.get(order_id)
        if order is None:
            raise UnknownOrderError(order_id)
        out: list[EngineEvent] = []
        ts = core.clock(now, out)
        problem = check_modify(order, price, quantity, stop_price, trail_amount, trail_percent)
        if not order.is_open:  # expired at this very call
            problem = ("order_closed", "the order expired before the modify")
        if problem is None and order.post_only and price is not None:
            best = core.state(order.symbol).market.best_opposite(order.is_buy)
            if best is not None and (best <= price if order.is_buy else best >= price):
                problem = ("post_only_would_take", "the new price would take liquidity")
        if problem is not None:
            out.append(ModifyRejected(order.id, order.account_id, problem[0], problem[1], ts))
            return out
        new_trail = (trail_amount is not None and trail_amount != order.trail_amount) or (
            trail_percent is not None and trail_percent != order.trail_percent)
        lost = ((price is not None and price != order.price)
                or (stop_price is not None and stop_price != order.stop_price)
                or (quantity is not None and order.quantity is not None
                    and quantity > order.quantity)
                or new_trail)
        working = order.status != OrderStatus.PENDING_NEW
        if lost and working:
            core.unhook(order)
        if price is not None:
            order.price = price
        if stop_price is not None:
            order.stop_price = stop_price
        if quantity is not None:
            order.quantity = quantity
        if new_trail:
            order.trail_amount, order.trail_percent = trail_amount, trail_percent
            order.stop_price = trail_level(order)  # from the water mark so far (None: not armed yet)
        order.revision += 1
        if lost:
            order.seq = core.next_seq()
        out.append(OrderModified(order.id, order.account_id, order.revision, order.price,
                                 order.quantity, order.stop_price, lost, ts))
        if lost and working:
            if order.limit_price is not None:
                core.execute_limit(order, ts, out)
            else:
                st = core.state(order.symbol)
                st.triggers.arm(order, st.market.last_price)
        return out

    # -- reading --------------------------------------------------------------------------
    def order(self, order_id: str) -> Order | None:
        """A copy of an open order (None once it is closed): the state to persist after a call."""
        order = self._core.orders.get(order_id)
        return copy_order(order) if order is not None else None

    def open_orders(self, account_id: str | None = None, symbol: str | None = None) -> list[Order]:
        """Copies of the open orders, in time priority (``seq``) order."""
        return [copy_order(o) for o in sorted(self._core.orders.values(), key=lambda o: o.seq)
                if (account_id is None or o.account_id == account_id)
                and (symbol is None or o.symbol == symbol)]

    def group(self, group_id: str) -> OrderGroup | None:
        return self._core.groups.get(group_id)

    def book_view(self, symbol: str, side: Side) -> list[tuple[Decimal, Decimal, int]]:
        """Our resting orders of one side, best first: (price, open quantity, order count)."""
        st = self._core.symbols.get(symbol)
        if st is None:
            return []
        resting = st.resting.side(side == Side.BUY)
        prices = reversed(resting.prices) if resting.is_bid else resting.prices
        view = []
        for price in prices:
            level = resting.levels[price]
            total = Decimal(0)
            for o in level.values():
                total += o.remaining_quantity or 0
            view.append((price, total, len(level)))
        return view

    # -- restart --------------------------------------------------------------------------
    def snapshot(self) -> EngineSnapshot:
        """Everything needed to rebuild this engine: open orders, groups, market views, clock."""
        core = self._core
        markets = tuple(
            MarketSnapshot(symbol, st.market.book, st.market.last_price,
                           {a: (dict(b), dict(s)) for a, (b, s) in st.market.taken.items()})
            for symbol, st in sorted(core.symbols.items()))
        return EngineSnapshot(
            orders=tuple(copy_order(o) for o in sorted(core.orders.values(), key=lambda o: o.seq)),
            groups=tuple(core.groups[g] for g in sorted(core.groups)),
            markets=markets, seq=core.seq, now=core.now)

    @classmethod
    def restore(cls, snapshot: EngineSnapshot, fees: FeeSchedule | None = None,
                instruments: Iterable[Instrument] = ()) -> MatchingEngine:
        engine = cls(fees, instruments)
        core = engine._core
        for market in snapshot.markets:
            view = core.state(market.symbol).market
            view.book, view.last_price = market.book, market.last_price
            view.taken = {a: (dict(b), dict(s)) for a, (b, s) in market.taken.items()}
        engine.load((copy_order(o) for o in snapshot.orders), snapshot.groups)
        core.seq = max(core.seq, snapshot.seq)
        core.now = snapshot.now
        return engine

    def load(self, orders: Iterable[Order], groups: Iterable[OrderGroup] = ()) -> None:
        """Re-arm open orders as persisted (state included: fills, seq, trigger, water mark).

        The engine takes ownership of the objects. Without market data restored, trailing
        stops that never saw a trade start tracking from the next one.
        """
        core = self._core
        for group in groups:
            core.groups[group.id] = group
        for order in sorted(orders, key=lambda o: o.seq):
            if not order.is_open or order.type == OrderType.MARKET:
                raise ValueError(f"order {order.id} is not an open resting or conditional order")
            if order.id in core.orders:
                raise DuplicateOrderError(order.id)
            core.orders[order.id] = order
            core.seq = max(core.seq, order.seq)
            if order.expires_at is not None and order.time_in_force == TimeInForce.DAY:
                core.expiries.add(order)
            if order.status == OrderStatus.PENDING_NEW:
                continue
            st = core.state(order.symbol)
            if order.limit_price is not None:
                st.resting.side(order.is_buy).add(order, order.limit_price)
            elif order.type in CONDITIONAL_TYPES and not order.triggered:
                st.triggers.arm(order, st.market.last_price)

    # -- checks ---------------------------------------------------------------------------
    def _check_fresh(self, order: Order) -> None:
        if order.id in self._core.orders:
            raise DuplicateOrderError(order.id)
        if order.status != OrderStatus.PENDING_NEW or order.filled_quantity or order.triggered:
            raise ValueError(f"order {order.id} is not a new order")

    def _check_group(self, group_id: str, legs: list[Order]) -> None:
        if group_id in self._core.groups:
            raise DuplicateOrderError(group_id)
        if len({leg.id for leg in legs}) != len(legs):
            raise DuplicateOrderError("the orders of a group need distinct ids")
        for leg in legs:
            self._check_fresh(leg)

    def _market_problem(self, order: Order) -> Problem | None:
        """Needs the book: a market order with no book to walk, a post-only that would take."""
        market = self._core.state(order.symbol).market
        if order.type == OrderType.MARKET and market.book is None:
            return "no_market_data", f"no order book for {order.symbol} yet"
        if order.post_only:
            best = market.best_opposite(order.is_buy)
            price = order.price
            assert price is not None
            if best is not None and (best <= price if order.is_buy else best >= price):
                return "post_only_would_take", f"the best opposite price is {best}"
        return None

    def _reject(self, order: Order, problem: Problem, ts: datetime, out: list[EngineEvent]) -> None:
        order.status = OrderStatus.REJECTED
        out.append(OrderRejected(order.id, order.account_id, problem[0], problem[1], ts))

    def _reject_group(self, legs: list[Order], problems: list[Problem | None], ts: datetime,
                      out: list[EngineEvent]) -> None:
        bad = next(p for p in problems if p)
        culprit = legs[problems.index(bad)].id
        for leg, problem in zip(legs, problems, strict=True):
            self._reject(leg, problem or ("group_rejected", f"order {culprit}: {bad[1]}"), ts, out)
