"""Armed conditional orders of one symbol, so that a trade touches only the ones it fires.

Fixed-level orders sit in two heaps keyed by stop price: ``up`` fires when a trade is at or
above the level (buy stop, sell take-profit), ``down`` when at or below (sell stop, buy
take-profit; keyed by the negated price so both are min-heaps). A trade pops exactly the
fired entries — O(k log n) for k fired, nothing for the rest. Cancels and re-arms leave stale
entries behind (an entry is live only while its ``seq`` matches the order's); they are skipped
when popped and compacted away when they outnumber the live ones.

Trailing stops move their level with every trade, so they are a plain dict walked per trade
(O(trailing stops of the symbol)); they are few compared with limits and fixed stops.
"""

from __future__ import annotations

import heapq
from decimal import Decimal

from tradepilot.trading.engine.amounts import EXACT, HUNDRED
from tradepilot.trading.engine.orders import Order, OrderType

_Entry = tuple[Decimal, int, str, Order]

FIRES_UP = frozenset({("buy", OrderType.STOP), ("buy", OrderType.STOP_LIMIT),
                      ("sell", OrderType.TAKE_PROFIT), ("sell", OrderType.TAKE_PROFIT_LIMIT)})


def fires_up(order: Order) -> bool:
    """True when a trade at or above the stop price fires the order (else at or below)."""
    if order.type == OrderType.TRAILING_STOP:
        return order.is_buy
    return (order.side.value, order.type) in FIRES_UP


def trail_level(order: Order) -> Decimal | None:
    """The trailing stop's current trigger price, from its water mark (exact)."""
    mark = order.water_mark
    if mark is None:
        return None
    if order.trail_amount is not None:
        if order.is_buy:
            return EXACT.add(mark, order.trail_amount)
        return EXACT.subtract(mark, order.trail_amount)
    assert order.trail_percent is not None
    factor = HUNDRED + order.trail_percent if order.is_buy else HUNDRED - order.trail_percent
    return EXACT.divide(EXACT.multiply(mark, factor), HUNDRED)


class TriggerBook:
    __slots__ = ("armed", "down", "trailing", "up")

    def __init__(self) -> None:
        self.up: list[_Entry] = []
        self.down: list[_Entry] = []
        self.armed: dict[str, Order] = {}  # fixed-level orders being watched
        self.trailing: dict[str, Order] = {}

    def __len__(self) -> int:
        return len(self.armed) + len(self.trailing)

    def arm(self, order: Order, last_price: Decimal | None) -> None:
        """Watch ``order``; arming it again (after a modify) makes its older entry stale."""
        if order.type == OrderType.TRAILING_STOP:
            if order.water_mark is None:
                order.water_mark = last_price
            order.stop_price = trail_level(order)
            self.trailing[order.id] = order
            return
        assert order.stop_price is not None
        self.armed[order.id] = order
        if fires_up(order):
            heapq.heappush(self.up, (order.stop_price, order.seq, order.id, order))
        else:
            heapq.heappush(self.down, (-order.stop_price, order.seq, order.id, order))
        if len(self.up) + len(self.down) > 2 * len(self.armed) + 64:
            self._compact()

    def disarm(self, order: Order) -> None:
        """Stop watching (its heap entry turns stale and is skipped or compacted later)."""
        if self.armed.pop(order.id, None) is None:
            self.trailing.pop(order.id, None)

    def collect(self, price: Decimal) -> tuple[list[Order], list[Order]]:
        """Pop and disarm every order a trade at ``price`` fires (trailing marks move first).

        Returns (fired, trailing stops whose water mark moved).
        """
        fired: list[Order] = []
        moved: list[Order] = []
        armed = self.armed
        for heap, key in ((self.up, price), (self.down, -price)):
            while heap and heap[0][0] <= key:
                entry = heapq.heappop(heap)
                if self._live(entry):
                    del armed[entry[2]]
                    fired.append(entry[3])
        if self.trailing:
            for order in list(self.trailing.values()):
                mark = order.water_mark
                if mark is None or (price < mark if order.is_buy else price > mark):
                    order.water_mark = price
                    order.stop_price = trail_level(order)
                    moved.append(order)
                elif price >= order.stop_price if order.is_buy else price <= order.stop_price:  # type: ignore[operator]
                    del self.trailing[order.id]
                    fired.append(order)
        return fired, moved

    def _live(self, entry: _Entry) -> bool:
        key, seq, order_id, order = entry
        # stop prices are positive: abs() undoes the down heap's negation
        return (self.armed.get(order_id) is order and order.seq == seq
                and order.stop_price == abs(key))

    def _compact(self) -> None:
        self.up = [entry for entry in self.up if self._live(entry)]
        self.down = [entry for entry in self.down if self._live(entry)]
        heapq.heapify(self.up)
        heapq.heapify(self.down)
