"""The engine's state and its execution primitives (accept, take, rest, fill, trigger, close).

Everything here appends events to an ``out`` list; :mod:`engine` is the public face that
validates requests and returns those lists. Group rules live in :mod:`linkage`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from tradepilot.market.types import Trade
from tradepilot.trading.engine import linkage
from tradepilot.trading.engine.amounts import EXACT, SCALE, fee_for, notional
from tradepilot.trading.engine.events import (
    EngineEvent,
    Fill,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderUpdated,
    StopMoved,
    Triggered,
)
from tradepilot.trading.engine.expiry import ExpiryQueue, next_utc_midnight, utc
from tradepilot.trading.engine.fees import FeeSchedule
from tradepilot.trading.engine.groups import OrderGroup
from tradepilot.trading.engine.market import MarketView
from tradepilot.trading.engine.orders import (
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from tradepilot.trading.engine.resting import RestingBook
from tradepilot.trading.engine.triggers import TriggerBook

_add = EXACT.add
_NEW, _PARTIAL, _FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
_MAKER, _TAKER = Liquidity.MAKER, Liquidity.TAKER
_MARKET_LIKE = frozenset({OrderType.MARKET, OrderType.STOP, OrderType.TAKE_PROFIT,
                          OrderType.TRAILING_STOP})


class SymbolState:
    """One symbol: our users' resting limits, armed conditionals, and the live market."""

    __slots__ = ("market", "quote", "resting", "step", "symbol", "triggers")

    def __init__(self, symbol: str, quote: str, step: Decimal) -> None:
        self.symbol = symbol
        self.quote = quote  # the fee currency
        self.step = step  # quantity step, for orders sized in quote currency
        self.resting = RestingBook()
        self.triggers = TriggerBook()
        self.market = MarketView()


class Core:
    def __init__(self, fees: FeeSchedule, instruments: dict[str, tuple[str, Decimal]]) -> None:
        self.fees = fees
        self.instruments = instruments  # symbol → (quote currency, step size)
        self.orders: dict[str, Order] = {}  # open orders only
        self.groups: dict[str, OrderGroup] = {}
        self.symbols: dict[str, SymbolState] = {}
        self.expiries = ExpiryQueue()
        self.seq = 0
        self.now: datetime | None = None

    # -- bookkeeping ----------------------------------------------------------------------
    def state(self, symbol: str) -> SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            quote, step = self.instruments.get(symbol, (symbol.rpartition("/")[2], SCALE))
            st = self.symbols[symbol] = SymbolState(symbol, quote, step)
        return st

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def clock(self, ts: datetime, out: list[EngineEvent]) -> datetime:
        """Move engine time to ``ts`` (never backwards) and expire the day orders now due."""
        ts = utc(ts)
        now = self.now
        if now is not None and ts < now:
            ts = now
        self.now = ts
        due = self.expiries.next_due()
        if due is not None and due <= ts:
            for order in self.expiries.pop_due(ts):
                if order.is_open:
                    self.close(order, OrderStatus.EXPIRED, "day_expired", ts, out)
        return ts

    # -- entering -------------------------------------------------------------------------
    def accept(self, order: Order, status: OrderStatus, ts: datetime,
               out: list[EngineEvent]) -> None:
        order.status = status
        order.accepted_at = ts
        order.seq = self.next_seq()
        self.orders[order.id] = order
        if order.time_in_force == TimeInForce.DAY and order.type != OrderType.MARKET:
            order.expires_at = next_utc_midnight(ts)
            self.expiries.add(order)
        out.append(OrderAccepted(order.id, order.account_id, status, order.seq, ts))

    def work(self, order: Order, ts: datetime, out: list[EngineEvent]) -> None:
        """An accepted order starts working: executes, rests, or is armed."""
        kind = order.type
        if kind == OrderType.MARKET:
            self.execute_market(order, ts, out)
        elif kind == OrderType.LIMIT:
            self.execute_limit(order, ts, out)
        else:
            st = self.state(order.symbol)
            st.triggers.arm(order, st.market.last_price)

    def execute_market(self, order: Order, ts: datetime, out: list[EngineEvent]) -> None:
        """Walk the book; what the visible depth cannot fill is canceled (IOC semantics)."""
        st = self.state(order.symbol)
        fills, done = st.market.walk(order.account_id, order.is_buy, None, order.remaining_quantity,
                                     order.remaining_quote, st.step)
        if order.time_in_force == TimeInForce.FOK and not done:
            self.close(order, OrderStatus.CANCELED, "fok_unfillable", ts, out)
            return
        self._take(order, st, fills, done, ts, out)
        if order.is_open:
            reason = "insufficient_depth" if order.filled_quantity else "no_liquidity"
            self.close(order, OrderStatus.CANCELED, reason, ts, out)

    def execute_limit(self, order: Order, ts: datetime, out: list[EngineEvent]) -> None:
        """Take what crosses (up to the limit), then rest, or cancel the rest (ioc, fok)."""
        st = self.state(order.symbol)
        limit = order.price
        assert limit is not None
        is_buy = order.is_buy
        best = st.market.best_available(order.account_id, is_buy)
        tif = order.time_in_force
        if best is not None and (best <= limit if is_buy else best >= limit):
            fills, done = st.market.walk(order.account_id, is_buy, limit, order.remaining_quantity,
                                         None, st.step)
            if tif == TimeInForce.FOK and not done:
                self.close(order, OrderStatus.CANCELED, "fok_unfillable", ts, out)
                return
            self._take(order, st, fills, done, ts, out)
            if not order.is_open:
                return
        elif tif == TimeInForce.FOK:
            self.close(order, OrderStatus.CANCELED, "fok_unfillable", ts, out)
            return
        if tif == TimeInForce.IOC:
            self.close(order, OrderStatus.CANCELED, "ioc_remainder", ts, out)
        else:
            st.resting.side(is_buy).add(order, limit)

    def _take(self, order: Order, st: SymbolState, fills: list[tuple[Decimal, Decimal]], done: bool,
              ts: datetime, out: list[EngineEvent]) -> None:
        last = len(fills) - 1
        for index, (price, qty) in enumerate(fills):
            if not order.is_open:  # a group rule closed it meanwhile
                return
            st.market.take(order.account_id, order.is_buy, price, qty)
            self.fill(order, price, qty, _TAKER, None, ts, out, complete=done and index == last)

    # -- fills ----------------------------------------------------------------------------
    def fill(self, order: Order, price: Decimal, qty: Decimal, liquidity: Liquidity,
             market_trade_id: str | None, ts: datetime, out: list[EngineEvent], *,
             complete: bool = False) -> None:
        """Apply one execution. ``complete``: the order is done (a quote-sized order whose
        budget is spent to within one step)."""
        rates = self.fees.rates(order.account_id)
        fee = fee_for(price, qty, rates.maker if liquidity is _MAKER else rates.taker)
        order.filled_quantity = filled = _add(order.filled_quantity, qty)
        order.filled_notional = _add(order.filled_notional, notional(price, qty))
        order.fees = _add(order.fees, fee)
        order.fill_count += 1
        previous = order.status
        quantity = order.quantity
        if quantity is not None:
            complete = complete or filled >= quantity
        elif not complete:
            complete = order.filled_notional >= order.quote_quantity  # type: ignore[operator]
        order.status = _FILLED if complete else _PARTIAL
        st = self.symbols[order.symbol]
        out.append(Fill(order.id, order.account_id, order.symbol, order.side, price, qty, fee,
                        st.quote, liquidity, f"{order.id}-{order.fill_count}", market_trade_id, ts))
        out.append(OrderUpdated(order.id, order.account_id, order.status, previous, filled,
                                None if quantity is None else EXACT.subtract(quantity, filled),
                                order.filled_notional, order.fees, ts))
        if complete:
            if liquidity is _MAKER:
                st.resting.side(order.is_buy).remove(order, order.price)  # type: ignore[arg-type]
            del self.orders[order.id]
        if order.group_id is not None:
            linkage.on_fill(self, order, ts, out)

    def on_trade(self, trade: Trade, ts: datetime, out: list[EngineEvent]) -> None:
        """Fill resting limits the trade reached, then fire the conditionals it triggers."""
        st = self.state(trade.symbol)
        price = trade.price
        st.market.last_price = price
        for order, qty in st.resting.allocate(price, trade.quantity):
            if order.is_open:
                self.fill(order, order.price, qty, _MAKER, trade.id, ts, out)  # type: ignore[arg-type]
        if len(st.triggers):
            fired, moved = st.triggers.collect(price)
            for order in moved:
                out.append(StopMoved(order.id, order.account_id, order.water_mark,  # type: ignore[arg-type]
                                     order.stop_price, ts))  # type: ignore[arg-type]
            if fired:
                fired.sort(key=lambda o: o.seq)
                for order in fired:
                    if order.is_open:
                        self.trigger(order, trade, ts, out)

    def trigger(self, order: Order, trade: Trade, ts: datetime, out: list[EngineEvent]) -> None:
        """A fired stop becomes a market order; a fired stop-limit a limit order (new priority)."""
        order.triggered = True
        out.append(Triggered(order.id, order.account_id, order.stop_price, trade.price,  # type: ignore[arg-type]
                             trade.id, ts))
        if order.group_id is not None:
            linkage.on_trigger(self, order, ts, out)
        if order.type in _MARKET_LIKE:
            self.execute_market(order, ts, out)
        else:
            order.seq = self.next_seq()
            self.execute_limit(order, ts, out)

    # -- leaving --------------------------------------------------------------------------
    def unhook(self, order: Order) -> None:
        """Take an open order out of the book or the trigger lists (wherever it is)."""
        st = self.symbols.get(order.symbol)
        if st is None:
            return
        price = order.limit_price
        if price is not None:
            side = st.resting.side(order.is_buy)
            level = side.levels.get(price)
            if level is not None and level.get(order.id) is order:
                side.remove(order, price)
        elif order.type != OrderType.MARKET:
            st.triggers.disarm(order)

    def close(self, order: Order, status: OrderStatus, reason: str, ts: datetime,
              out: list[EngineEvent], *, cascade: bool = True) -> None:
        """Cancel or expire an open order; ``cascade`` applies the group rules."""
        self.unhook(order)
        order.status = status
        self.orders.pop(order.id, None)
        if status == OrderStatus.EXPIRED:
            out.append(OrderExpired(order.id, order.account_id, order.filled_quantity, ts))
        else:
            out.append(OrderCanceled(order.id, order.account_id, reason, order.filled_quantity, ts))
        if order.group_id is not None:
            linkage.on_close(self, order, ts, out, cascade=cascade)
