"""Day orders: when they expire, and a queue that finds the due ones without scanning.

The day is the UTC day: an order accepted at any moment of a day expires at the next 00:00
UTC — at the first engine call whose time is at or after that instant (the engine has no
clock; time arrives with the calls).
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta, timezone

from tradepilot.trading.engine.orders import Order


def utc(ts: datetime) -> datetime:
    """Refuse naive datetimes: an engine fed local times would expire orders at the wrong hour."""
    if ts.tzinfo is timezone.utc:
        return ts
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("engine times must be timezone-aware")
    return ts.astimezone(timezone.utc)


def next_utc_midnight(ts: datetime) -> datetime:
    """The first 00:00 UTC strictly after ``ts`` (an order placed at 00:00 lives a whole day)."""
    day = utc(ts).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


class ExpiryQueue:
    """A heap of (expiry, seq, order); entries of orders that closed meanwhile are skipped."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str, Order]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, order: Order) -> None:
        assert order.expires_at is not None
        heapq.heappush(self._heap, (order.expires_at, order.seq, order.id, order))

    def next_due(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[Order]:
        """Open orders whose expiry is at or before ``now``, in time priority (``seq``) order."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            order = heapq.heappop(heap)[3]
            if order.is_open:
                due.append(order)
        due.sort(key=lambda o: o.seq)
        return due
