"""Matching engine properties over random sequences of books, trades, orders, modifies, cancels.

Invariants checked after every call, against a model the test keeps itself (the last book,
what each account took from it, the fills seen):

* no order fills beyond its quantity (or its quote budget);
* no fill is worse than the order's limit, and a maker fill is at the limit;
* a limit order that was marketable on arrival never stays ``new``;
* a post-only order that was accepted did not cross the last book;
* market orders never stay open; nothing happens to an order after it closed;

and ``restore(snapshot())`` — through JSON — behaves exactly like the original on the rest of
the sequence.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.matching_support import SYMBOL, T0
from tradepilot.market.types import OrderBook, Trade
from tradepilot.trading.engine import (
    EngineEvent,
    EngineSnapshot,
    Fill,
    MatchingEngine,
    ModifyRejected,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderType,
    OrderUpdated,
)

HALF = Decimal("0.5")
prices = st.integers(180, 220).map(lambda n: Decimal(n) * HALF)  # 90.0 … 110.0
sizes = st.integers(1, 30).map(lambda n: Decimal(n) / 10)
accounts = st.sampled_from(["a", "b"])
steps = st.sampled_from([0, 0, 1, 60, 3600, 7 * 3600])  # seconds: some ops cross UTC midnight

order_specs = st.fixed_dictionaries({
    "side": st.sampled_from(["buy", "sell"]),
    "type": st.sampled_from(["market", "limit", "limit", "limit", "stop", "stop_limit", "take_profit",
                             "take_profit_limit", "trailing_stop"]),
    "tif": st.sampled_from(["gtc", "gtc", "ioc", "fok", "day"]),
    "qty": sizes,
    "quote": st.one_of(st.none(), st.integers(10, 400).map(Decimal)),
    "price": prices,
    "stop": prices,
    "trail": st.one_of(st.tuples(st.just("amount"), st.integers(1, 8).map(lambda n: Decimal(n) * HALF)),
                       st.tuples(st.just("percent"), st.sampled_from([Decimal("0.5"), Decimal(2)]))),
    "post_only": st.booleans(),
    "account": accounts,
})

ops = st.one_of(
    st.tuples(st.just("book"), steps, prices, st.integers(1, 4),
              st.lists(sizes, min_size=1, max_size=4), st.lists(sizes, min_size=1, max_size=4)),
    st.tuples(st.just("book"), steps, prices, st.integers(1, 4),
              st.lists(sizes, min_size=0, max_size=2), st.lists(sizes, min_size=0, max_size=2)),
    st.tuples(st.just("trade"), steps, prices, sizes),
    st.tuples(st.just("trade"), steps, prices, sizes),
    st.tuples(st.just("trade"), steps, prices, sizes),
    st.tuples(st.just("place"), steps, order_specs),
    st.tuples(st.just("place"), steps, order_specs),
    st.tuples(st.just("place"), steps, order_specs),
    st.tuples(st.just("bracket"), steps, order_specs, prices, prices, st.booleans()),
    st.tuples(st.just("oco"), steps, order_specs, prices, prices),
    st.tuples(st.just("cancel"), steps, st.integers(0, 50)),
    st.tuples(st.just("cancel_all"), steps, accounts),
    st.tuples(st.just("modify"), steps, st.integers(0, 50), st.sampled_from(["price", "quantity", "stop_price"]),
              prices, sizes),
    st.tuples(st.just("modify"), steps, st.integers(0, 50), st.sampled_from(["price", "quantity"]),
              prices, sizes),
)


def build(order_id: str, spec: dict[str, Any]) -> Order:
    kind = spec["type"]
    quote = spec["quote"] if kind == "market" and spec["side"] == "buy" else None
    kwargs: dict[str, Any] = {
        "quantity": None if quote is not None else spec["qty"], "quote_quantity": quote,
        "time_in_force": "gtc" if quote is not None and spec["tif"] == "fok" else spec["tif"],
        "post_only": spec["post_only"] and kind == "limit" and spec["tif"] in ("gtc", "day"),
    }
    if kind in ("limit", "stop_limit", "take_profit_limit"):
        kwargs["price"] = spec["price"]
    if kind in ("stop", "stop_limit", "take_profit", "take_profit_limit"):
        kwargs["stop_price"] = spec["stop"]
    if kind == "trailing_stop":
        name, value = spec["trail"]
        kwargs["trail_amount" if name == "amount" else "trail_percent"] = value
    return Order(order_id, spec["account"], SYMBOL, spec["side"], OrderType(kind), **kwargs)


def make_book(mid: Decimal, spread: int, bids: list[Decimal], asks: list[Decimal], ts: Any, seq: int) -> OrderBook:
    return OrderBook("t", SYMBOL, seq, tuple((mid - HALF * (spread + i), q) for i, q in enumerate(bids)),
                     tuple((mid + HALF * (spread + i), q) for i, q in enumerate(asks)), ts)


@dataclass
class Driver:
    """Plays ops on one engine (fresh Order objects each time) and checks every call."""

    engine: MatchingEngine
    check: bool = True
    ts: Any = T0
    n: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    filled: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    spent: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    closed: set[str] = field(default_factory=set)
    book: OrderBook | None = None
    taken: dict[tuple[str, Decimal], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def play(self, op: tuple) -> list[EngineEvent]:
        kind, dt = op[0], op[1]
        self.ts = self.ts + timedelta(seconds=dt)
        self.n += 1
        e = self.engine
        before_book, before_taken = self.book, dict(self.taken)
        placed: Order | None = None
        if kind == "book":
            _, _, mid, spread, bids, asks = op
            self.book = make_book(mid, spread, bids, asks, self.ts, self.n)
            self.taken.clear()
            events = e.on_book(self.book)
        elif kind == "trade":
            events = e.on_trade(Trade("t", SYMBOL, f"t{self.n}", op[2], op[3], "buy", self.ts))
        elif kind == "place":
            placed = self._new(f"o{self.n}", op[2])
            events = e.place(placed, self.ts)
        elif kind == "bracket":
            _, _, spec, tp, sl, trailing = op
            entry = self._new(f"o{self.n}", dict(spec, type="limit" if spec["type"] != "market" else "market",
                                                   quote=None))
            exit_side = "sell" if entry.is_buy else "buy"
            take = self._new(f"o{self.n}tp", dict(spec, type="limit", side=exit_side, price=tp, tif="gtc",
                                                  post_only=False))
            take.quantity = None
            stop_spec = dict(spec, type="trailing_stop" if trailing else "stop", side=exit_side, stop=sl,
                             tif="gtc")
            stop = self._new(f"o{self.n}sl", stop_spec)
            stop.quantity = None
            events = e.place_bracket(f"g{self.n}", entry, self.ts, take_profit=take, stop_loss=stop)
        elif kind == "oco":
            _, _, spec, lim, stp = op
            first = self._new(f"o{self.n}a", dict(spec, type="limit", price=lim, tif="gtc", quote=None))
            second = self._new(f"o{self.n}b", dict(spec, type="stop", stop=stp, tif="gtc", quote=None))
            events = e.place_oco(f"g{self.n}", first, second, self.ts)
        elif kind == "cancel":
            target = self._pick(op[2])
            events = e.cancel(target.id, self.ts) if target else e.advance(self.ts)
        elif kind == "cancel_all":
            events = e.cancel_all(op[2], self.ts)
        else:
            _, _, index, name, price, qty = op
            target = self._pick(index)
            value = qty if name == "quantity" else price
            events = e.modify(target.id, self.ts, **{name: value}) if target else e.advance(self.ts)
        if self.check:
            self._check(events, placed, before_book, before_taken)
        return events

    def _new(self, order_id: str, spec: dict[str, Any]) -> Order:
        order = build(order_id, spec)
        self.orders[order_id] = order
        return order

    def _pick(self, index: int) -> Order | None:
        open_orders = self.engine.open_orders()
        return open_orders[index % len(open_orders)] if open_orders else None

    def _check(self, events: list[EngineEvent], placed: Order | None, book: OrderBook | None,
               taken: dict[tuple[str, Decimal], Decimal]) -> None:
        for event in events:
            if isinstance(event, ModifyRejected):
                continue
            order_id = event.order_id
            assert order_id not in self.closed, f"{event} after {order_id} closed"
            order = self.orders[order_id]
            if isinstance(event, Fill):
                self._check_fill(order, event)
            if isinstance(event, OrderCanceled | OrderExpired | OrderRejected):
                self.closed.add(order_id)
            if isinstance(event, OrderUpdated) and event.status == "filled":
                self.closed.add(order_id)
        for order_id in {x.order_id for x in events if isinstance(x, Fill)}:
            assert self.filled[order_id] == self.orders[order_id].filled_quantity
        for order in self.engine.open_orders():
            assert order.type != OrderType.MARKET
            if order.quantity is not None and order.status != "pending_new":
                assert order.filled_quantity < order.quantity
        if placed is not None and placed.type == OrderType.LIMIT and any(
                isinstance(x, OrderAccepted) and x.order_id == placed.id for x in events):
            self._check_arrival(placed, book, taken)

    def _check_fill(self, order: Order, fill: Fill) -> None:
        self.filled[order.id] += fill.quantity
        self.spent[order.id] += fill.price * fill.quantity
        assert fill.quantity > 0
        if order.quantity is not None:
            assert self.filled[order.id] <= order.quantity
        else:
            assert order.quote_quantity is not None and self.spent[order.id] <= order.quote_quantity
        limit = order.limit_price
        if fill.liquidity == "maker":
            assert limit is not None and fill.price == limit
        elif limit is not None:
            assert fill.price <= limit if order.is_buy else fill.price >= limit
        if fill.liquidity == "taker":
            self.taken[(order.account_id, fill.price)] += fill.quantity

    def _check_arrival(self, order: Order, book: OrderBook | None,
                       taken: dict[tuple[str, Decimal], Decimal]) -> None:
        assert order.price is not None
        levels = () if book is None else (book.asks if order.is_buy else book.bids)
        crossing = [(p, q) for p, q in levels if (p <= order.price if order.is_buy else p >= order.price)]
        if order.post_only:
            assert not crossing, "an accepted post-only order crossed the book"
        marketable = any(q > taken.get((order.account_id, p), Decimal(0)) for p, q in crossing)
        if marketable:
            assert order.status != "new", f"{order.id} was marketable but stayed new"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=10, max_size=60))
def test_invariants_hold_over_random_sequences(sequence: list[tuple]) -> None:
    driver = Driver(MatchingEngine())
    for op in sequence:
        driver.play(op)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=10, max_size=60), st.data())
def test_restore_of_a_snapshot_behaves_identically(sequence: list[tuple], data: st.DataObject) -> None:
    split = data.draw(st.integers(1, len(sequence) - 1))
    original = Driver(MatchingEngine(), check=False)
    for op in sequence[:split]:
        original.play(op)
    frozen = json.loads(json.dumps(original.engine.snapshot().to_dict()))
    restored_engine = MatchingEngine.restore(EngineSnapshot.from_dict(frozen))
    assert restored_engine.snapshot().to_dict() == frozen
    restored = Driver(restored_engine, check=False, ts=original.ts, n=original.n)
    for op in sequence[split:]:
        assert original.play(op) == restored.play(op)
    assert original.engine.snapshot().to_dict() == restored.engine.snapshot().to_dict()
