"""A local L2 book kept from a depth snapshot plus diffs, by Binance's documented rules.

Binance ("How to manage a local order book correctly", spot):

1. open the diff stream and buffer the events;
2. get a REST snapshot ``{lastUpdateId, bids, asks}``; if ``lastUpdateId`` is older than the
   first buffered event (``lastUpdateId + 1 < U``), get another one;
3. drop buffered events with ``u <= lastUpdateId``;
4. the first event applied must have ``U <= lastUpdateId + 1 <= u``;
5. every next event must have ``U == previous u + 1``; otherwise the book is out of sync:
   throw it away and start again from 2 (a *resync*);
6. a quantity is absolute: set the level, and a quantity of 0 removes it.

:class:`DepthSync` implements exactly that, independent of I/O: feed it diffs and snapshots,
and it tells you what it did with each (:class:`DiffResult`). The replay feed drives it from
a recorded capture; the exchange feed's REST fallback drives it from polled snapshots.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from tradepilot.market.types import Level

RawLevel = Sequence[str | Decimal]  # ("61837.63000000", "0.02000000") as Binance sends them

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @classmethod
    def from_binance(cls, payload: dict) -> DepthSnapshot:
        """``{"lastUpdateId": …, "bids": [[p, q], …], "asks": …}`` (REST ``/api/v3/depth``)."""
        return cls(int(payload["lastUpdateId"]), _levels(payload["bids"]), _levels(payload["asks"]))


@dataclass(frozen=True, slots=True)
class DepthDiff:
    first_id: int  # U
    final_id: int  # u
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    event_ms: int = 0  # E, the exchange's event time

    @classmethod
    def from_binance(cls, payload: dict) -> DepthDiff:
        """A ``depthUpdate`` event: ``{"e":"depthUpdate","E":…,"U":…,"u":…,"b":[…],"a":[…]}``."""
        return cls(int(payload["U"]), int(payload["u"]), _levels(payload["b"]), _levels(payload["a"]),
                   int(payload.get("E", 0)))


def _levels(raw: Iterable[RawLevel]) -> tuple[Level, ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in raw)


class LocalBook:
    """Every price level we know of, sorted; top-N views are cheap."""

    def __init__(self) -> None:
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._bid_prices: list[Decimal] = []  # ascending; best bid last
        self._ask_prices: list[Decimal] = []  # ascending; best ask first

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._bid_prices.clear()
        self._ask_prices.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.clear()
        self.update(bids, asks)

    def update(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        for price, qty in bids:
            _set(self._bids, self._bid_prices, price, qty)
        for price, qty in asks:
            _set(self._asks, self._ask_prices, price, qty)

    def top(self, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """(bids best first, asks best first), at most ``depth`` levels each."""
        bid_prices = self._bid_prices[-depth:][::-1] if depth > 0 else []
        ask_prices = self._ask_prices[:depth]
        return (tuple((p, self._bids[p]) for p in bid_prices), tuple((p, self._asks[p]) for p in ask_prices))

    @property
    def best_bid(self) -> Decimal | None:
        return self._bid_prices[-1] if self._bid_prices else None

    @property
    def best_ask(self) -> Decimal | None:
        return self._ask_prices[0] if self._ask_prices else None

    @property
    def crossed(self) -> bool:
        """Best bid at or above best ask: a book no exchange would show."""
        bid, ask = self.best_bid, self.best_ask
        return bid is not None and ask is not None and bid >= ask

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)


def _set(levels: dict[Decimal, Decimal], prices: list[Decimal], price: Decimal, qty: Decimal) -> None:
    if qty == ZERO:
        if levels.pop(price, None) is not None:
            del prices[bisect_left(prices, price)]
        return
    if price not in levels:
        insort(prices, price)
    levels[price] = qty


class DiffResult(enum.Enum):
    APPLIED = "applied"  # the book moved to this diff's final id
    BUFFERED = "buffered"  # no snapshot yet: kept for when it arrives
    STALE = "stale"  # already contained in the book (u <= last update id): dropped
    GAP = "gap"  # ids not continuous: the book is discarded, a new snapshot is needed


class SnapshotResult(enum.Enum):
    SYNCED = "synced"  # the book is live; buffered diffs were applied
    TOO_OLD = "too_old"  # older than the first buffered diff: fetch another snapshot
    GAP = "gap"  # the buffered diffs after it were not continuous: fetch another snapshot


class DepthSync:
    """Snapshot + diff synchronisation for one symbol (see the module docstring)."""

    def __init__(self, *, max_buffer: int = 10_000) -> None:
        self.book = LocalBook()
        self._buffer: deque[DepthDiff] = deque(maxlen=max_buffer)
        self._last_id: int | None = None  # None: waiting for a snapshot
        self._first_pending = False  # the next applied diff is the first after a snapshot
        self.resyncs = 0  # gaps seen (each one discards the book)

    @property
    def synced(self) -> bool:
        return self._last_id is not None

    @property
    def last_update_id(self) -> int | None:
        return self._last_id

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def on_diff(self, diff: DepthDiff) -> DiffResult:
        if self._last_id is None:
            self._buffer.append(diff)
            return DiffResult.BUFFERED
        return self._apply(diff)

    def on_snapshot(self, snapshot: DepthSnapshot) -> SnapshotResult:
        """Load the snapshot and apply what was buffered; a gap found there starts over."""
        last_id = snapshot.last_update_id
        if self._buffer and last_id + 1 < self._buffer[0].first_id:
            return SnapshotResult.TOO_OLD
        self.book.load(snapshot.bids, snapshot.asks)
        self._last_id = last_id
        self._first_pending = True
        pending, self._buffer = list(self._buffer), deque(maxlen=self._buffer.maxlen)
        for diff in pending:
            if self._last_id is None:  # a gap while unrolling: keep buffering the rest
                self._buffer.append(diff)
            else:
                self._apply(diff)
        return SnapshotResult.SYNCED if self._last_id is not None else SnapshotResult.GAP

    def reset(self) -> None:
        """Forget the book and wait for a new snapshot (diffs received from now on are buffered)."""
        self.book.clear()
        self._last_id = None
        self._first_pending = False

    def _apply(self, diff: DepthDiff) -> DiffResult:
        assert self._last_id is not None
        if diff.final_id <= self._last_id:
            return DiffResult.STALE
        expected = self._last_id + 1
        continuous = diff.first_id <= expected if self._first_pending else diff.first_id == expected
        if not continuous:
            self.resyncs += 1
            self.reset()
            self._buffer.append(diff)
            return DiffResult.GAP
        self.book.update(diff.bids, diff.asks)
        self._last_id = diff.final_id
        self._first_pending = False
        return DiffResult.APPLIED
