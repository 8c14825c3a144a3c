"""The live market as one symbol's taker orders see it: the last book, the last trade price,
and the liquidity each account has already taken from that book.

Paper orders do not remove liquidity from the real venue, but an account must not take the
same visible level twice by splitting an order: what an account takes is subtracted *for that
account* until the next book update replaces the book. Other accounts still see the full book
— users are isolated from each other, so one user's paper trading never moves another's fills.
"""

from __future__ import annotations

from decimal import Decimal

from tradepilot.market.types import Level, OrderBook
from tradepilot.trading.engine.amounts import EXACT, ZERO, notional, quantity_for_budget

_sub = EXACT.subtract
_Taken = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]  # (from bids, from asks)


class MarketView:
    __slots__ = ("book", "last_price", "taken")

    def __init__(self) -> None:
        self.book: OrderBook | None = None
        self.last_price: Decimal | None = None
        self.taken: dict[str, _Taken] = {}

    def set_book(self, book: OrderBook) -> None:
        self.book = book
        self.taken = {}

    def _opposite(self, account_id: str,
                  is_buy: bool) -> tuple[tuple[Level, ...], dict[Decimal, Decimal] | None]:
        book = self.book
        if book is None:
            return (), None
        taken = self.taken.get(account_id)
        if is_buy:
            return book.asks, (taken[1] if taken else None)
        return book.bids, (taken[0] if taken else None)

    def best_available(self, account_id: str, is_buy: bool) -> Decimal | None:
        """The best opposite price this account can still take from, or None."""
        levels, used = self._opposite(account_id, is_buy)
        for price, size in levels:
            if not used or size > used.get(price, ZERO):
                return price
        return None

    def best_opposite(self, is_buy: bool) -> Decimal | None:
        """The book's best opposite price, whoever took from it (post-only checks this)."""
        book = self.book
        if book is None:
            return None
        levels = book.asks if is_buy else book.bids
        return levels[0][0] if levels else None

    def walk(self, account_id: str, is_buy: bool, limit: Decimal | None, quantity: Decimal | None,
             budget: Decimal | None, step: Decimal) -> tuple[list[tuple[Decimal, Decimal]], bool]:
        """The fills a taker would get, and whether they complete the order.

        Levels best first, up to ``limit``, until ``quantity`` (base) is filled or ``budget``
        (quote) is spent — each level's quantity then rounded down to ``step``, and the budget
        counts as spent once it buys less than one step at the next level. Pure: nothing is
        taken until :meth:`take`.
        """
        levels, used = self._opposite(account_id, is_buy)
        out: list[tuple[Decimal, Decimal]] = []
        left = quantity if quantity is not None else budget
        assert left is not None
        for price, size in levels:
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            if used:
                size = _sub(size, used.get(price, ZERO))
                if size <= 0:
                    continue
            if quantity is not None:
                qty = size if size < left else left
                left = _sub(left, qty)
            else:
                qty = quantity_for_budget(left, price, step)
                if qty <= 0:
                    return out, True  # less than one step left: the budget is spent
                if qty < size:  # the level outlasts the budget: spent to within one step
                    out.append((price, qty))
                    return out, True
                qty = size
                left = _sub(left, notional(price, qty))
            out.append((price, qty))
            if left <= 0:
                return out, True
        return out, False

    def take(self, account_id: str, is_buy: bool, price: Decimal, quantity: Decimal) -> None:
        """Record that the account took ``quantity`` at ``price`` from the current book."""
        taken = self.taken.get(account_id)
        if taken is None:
            taken = self.taken[account_id] = ({}, {})
        used = taken[1] if is_buy else taken[0]
        used[price] = EXACT.add(used.get(price, ZERO), quantity)
