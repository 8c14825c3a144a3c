"""The price-alert index: which alerts a new price fires, in O(log n + k) per tick.

Per symbol, every condition keeps its alerts in a list sorted by threshold
(``sortedcontainers.SortedKeyList``), so a tick is a few binary searches plus the k matches:

* ``above``: thresholds ≤ price — a prefix;
* ``below``: thresholds ≥ price — a suffix;
* ``crosses``: thresholds between the previous price and this one — one range in the list
  of the move's direction (up: previous < threshold ≤ price; down: price ≤ threshold < previous);
* ``percent_change`` over a window W: the change from the price at the window's start is
  computed once per (symbol, W) per tick; alerts whose percent is ≤ the rise (up list) or ≤ the
  fall (down list) match — a prefix. The window is a deque trimmed as time passes (amortised
  O(1)); until it covers W, its alerts cannot fire.

Pure and synchronous, with no database and no clock of its own: the engine removes what fired
and decides about cool-downs. Times are seconds (the engine's injected clock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from sortedcontainers import SortedKeyList

from tradepilot.alerts.constants import ABOVE, ANY, BELOW, CROSSES, DOWN, PERCENT_CHANGE, UP

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class PriceRule:
    """What the index needs of one price alert."""

    id: str
    symbol: str
    condition: str
    threshold: Decimal  # a price; for percent_change a positive percent
    direction: str | None = None  # crosses / percent_change: up, down, any
    window_seconds: int | None = None


def _entries() -> SortedKeyList:
    return SortedKeyList(key=lambda entry: entry[0])


@dataclass(slots=True)
class _Window:
    seconds: int
    prices: deque[tuple[float, Decimal]] = field(default_factory=deque)
    up: SortedKeyList = field(default_factory=_entries)
    down: SortedKeyList = field(default_factory=_entries)

    def change(self, at: float, price: Decimal) -> Decimal | None:
        """Percent change since the window's start (None until history covers the window)."""
        prices = self.prices
        prices.append((at, price))
        start = at - self.seconds
        while len(prices) >= 2 and prices[1][0] <= start:
            prices.popleft()
        first_at, reference = prices[0]
        if first_at > start or not reference:
            return None
        return (price - reference) * HUNDRED / reference


@dataclass(slots=True)
class _Symbol:
    above: SortedKeyList = field(default_factory=_entries)
    below: SortedKeyList = field(default_factory=_entries)
    cross_up: SortedKeyList = field(default_factory=_entries)
    cross_down: SortedKeyList = field(default_factory=_entries)
    windows: dict[int, _Window] = field(default_factory=dict)
    last: Decimal | None = None


class PriceAlertIndex:
    def __init__(self) -> None:
        self._symbols: dict[str, _Symbol] = {}
        self._rules: dict[str, PriceRule] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: str) -> bool:
        return rule_id in self._rules

    def last_price(self, symbol: str) -> Decimal | None:
        book = self._symbols.get(symbol)
        return None if book is None else book.last

    def _lists(self, rule: PriceRule, create: bool) -> list[SortedKeyList]:
        book = self._symbols.get(rule.symbol)
        if book is None:
            if not create:
                return []
            book = self._symbols[rule.symbol] = _Symbol()
        if rule.condition == ABOVE:
            return [book.above]
        if rule.condition == BELOW:
            return [book.below]
        direction = rule.direction or ANY
        if rule.condition == CROSSES:
            return [lst for lst, d in ((book.cross_up, UP), (book.cross_down, DOWN)) if direction in (d, ANY)]
        if rule.condition == PERCENT_CHANGE:
            seconds = int(rule.window_seconds or 0)
            window = book.windows.get(seconds)
            if window is None:
                if not create:
                    return []
                window = book.windows[seconds] = _Window(seconds)
            return [lst for lst, d in ((window.up, UP), (window.down, DOWN)) if direction in (d, ANY)]
        raise ValueError(f"not a price condition: {rule.condition!r}")

    def add(self, rule: PriceRule) -> None:
        """Index ``rule`` (replacing an earlier version with the same id)."""
        self.remove(rule.id)
        for lst in self._lists(rule, create=True):
            lst.add((rule.threshold, rule.id))
        self._rules[rule.id] = rule

    def remove(self, rule_id: str) -> PriceRule | None:
        rule = self._rules.pop(rule_id, None)
        if rule is not None:
            for lst in self._lists(rule, create=False):
                lst.discard((rule.threshold, rule.id))
        return rule

    def on_price(self, symbol: str, price: Decimal, at: float) -> list[tuple[str, Decimal]]:
        """Ids of the alerts this price fires, each with the value that fired it (the price, or
        the percent change). Rules stay indexed: the caller removes what it fired."""
        book = self._symbols.get(symbol)
        if book is None:
            book = self._symbols[symbol] = _Symbol()
        previous, book.last = book.last, price
        fired: list[tuple[str, Decimal]] = []
        fired.extend((rid, price) for _, rid in book.above.irange_key(max_key=price))
        fired.extend((rid, price) for _, rid in book.below.irange_key(min_key=price))
        if previous is not None and previous != price:
            if price > previous:
                matches = book.cross_up.irange_key(previous, price, inclusive=(False, True))
            else:
                matches = book.cross_down.irange_key(price, previous, inclusive=(True, False))
            fired.extend((rid, price) for _, rid in matches)
        for window in book.windows.values():
            change = window.change(at, price)
            if change is None:
                continue
            if change > 0:
                fired.extend((rid, change) for _, rid in window.up.irange_key(max_key=change))
            elif change < 0:
                fired.extend((rid, change) for _, rid in window.down.irange_key(max_key=-change))
        return fired
