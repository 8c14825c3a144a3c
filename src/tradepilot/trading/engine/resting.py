"""Resting limit orders of one symbol, by price level, FIFO within a level.

A side is a dict ``price → level`` plus the level prices in a sorted list. A level is an
insertion-ordered dict ``order id → order``: FIFO iteration like a deque, but cancelling from
the middle is O(1) instead of O(n). The sorted price list is kept with ``bisect``: inserting a
*new* level shifts the list (a memmove, fast for the few thousand levels a symbol has), while
the common operations — join an existing level, best price, walk from the best price to a
trade's price — are O(1) or proportional to what they touch.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from decimal import Decimal

from tradepilot.trading.engine.amounts import EXACT
from tradepilot.trading.engine.orders import Order

_sub = EXACT.subtract


class RestingSide:
    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[Decimal, dict[str, Order]] = {}
        self.prices: list[Decimal] = []  # ascending; the best bid is last, the best ask first

    def __len__(self) -> int:
        return sum(len(level) for level in self.levels.values())

    def add(self, order: Order, price: Decimal) -> None:
        """Join the back of the level (callers add in ``seq`` order, so FIFO is seq order)."""
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = {}
            insort(self.prices, price)
        level[order.id] = order

    def remove(self, order: Order, price: Decimal) -> None:
        level = self.levels[price]
        del level[order.id]
        if not level:
            del self.levels[price]
            del self.prices[bisect_left(self.prices, price)]

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def eligible(self, trade_price: Decimal) -> Iterator[Order]:
        """Orders a trade at ``trade_price`` reaches, best price first, FIFO within a level.

        Bids at or above the trade price, asks at or below it. Do not mutate while iterating.
        """
        prices = self.prices
        if self.is_bid:
            index = len(prices) - 1
            while index >= 0 and prices[index] >= trade_price:
                yield from self.levels[prices[index]].values()
                index -= 1
        else:
            index, end = 0, len(prices)
            while index < end and prices[index] <= trade_price:
                yield from self.levels[prices[index]].values()
                index += 1

    def orders(self) -> Iterator[Order]:
        for price in self.prices:
            yield from self.levels[price].values()


class RestingBook:
    """Both sides of one symbol."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = RestingSide(is_bid=True)
        self.asks = RestingSide(is_bid=False)

    def side(self, is_buy: bool) -> RestingSide:
        return self.bids if is_buy else self.asks

    def allocate(self, trade_price: Decimal, volume: Decimal) -> list[tuple[Order, Decimal]]:
        """Share one market trade's volume among the orders it reaches, per side.

        Each side gets the whole traded volume (a trade "through" both a resting buy and a
        resting sell — possible, since users are not matched with each other — fills both),
        handed out by price-time priority. Nothing is changed: the caller applies the fills.
        """
        out: list[tuple[Order, Decimal]] = []
        if volume <= 0:
            return out
        for side in (self.bids, self.asks):
            best = side.best()
            if best is None or (best < trade_price if side.is_bid else best > trade_price):
                continue
            left = volume
            for order in side.eligible(trade_price):
                remaining = _sub(order.quantity, order.filled_quantity)  # type: ignore[arg-type]
                take = remaining if remaining <= left else left
                out.append((order, take))
                left = _sub(left, take)
                if not left:
                    break
        return out
