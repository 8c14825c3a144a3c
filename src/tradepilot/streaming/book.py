"""Order-book snapshots and per-client deltas.

The market publishes full top-50 snapshots. Each client receives a snapshot when it
subscribes (or asks to resync), then deltas against the last book *it* was sent, numbered
by its own per-channel ``seq``. A delta is computed when the client's writer is ready to
send, from whatever book is newest then: a lagging client skips intermediate books (they
are conflated) and still receives a correct delta. Clients in step share one cached delta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradepilot.core.money import to_plain_string
from tradepilot.streaming.protocol import data_frame, dumps

Levels = dict[str, str]  # price → quantity as canonical decimal strings, best first


def _text(value: Any) -> str:
    if isinstance(value, Decimal):
        return to_plain_string(value)
    if isinstance(value, int):
        return str(value)
    # strings too: "100.0" and "100.00" must be one price level
    return to_plain_string(Decimal(value if isinstance(value, str) else str(value)))


def _levels(raw: Any) -> Levels:
    return {_text(price): _text(qty) for price, qty in (raw or ())}


@dataclass(slots=True)
class BookView:
    """One book, normalised once for all clients."""

    version: int
    bids: Levels
    asks: Levels
    meta: dict[str, Any]
    _snapshot: str | None = field(default=None, repr=False)

    @classmethod
    def from_payload(cls, version: int, payload: dict[str, Any]) -> BookView:
        meta = {"venue": payload.get("venue"), "symbol": payload.get("symbol"), "ts": payload.get("ts")}
        return cls(version, _levels(payload.get("bids")), _levels(payload.get("asks")), meta)

    def snapshot_json(self) -> str:
        if self._snapshot is None:
            self._snapshot = dumps({**self.meta, "bids": [[p, q] for p, q in self.bids.items()],
                                    "asks": [[p, q] for p, q in self.asks.items()]})
        return self._snapshot


def diff_levels(old: Levels, new: Levels) -> list[list[str]]:
    """Levels to set (new or changed quantity), and removed levels with quantity ``"0"``."""
    changes = [[price, qty] for price, qty in new.items() if old.get(price) != qty]
    changes.extend([price, "0"] for price in old if price not in new)
    return changes


def apply_delta(levels: Levels, changes: list[list[str]]) -> Levels:
    """What a client does with a delta (used by tests and the documentation's example)."""
    out = dict(levels)
    for price, qty in changes:
        if Decimal(qty) == 0:
            out.pop(price, None)
        else:
            out[price] = qty
    return out


class BookFeed:
    """The newest book of one symbol; normalised lazily, so symbols nobody watches cost little."""

    def __init__(self) -> None:
        self._version = 0
        self._payload: dict[str, Any] | None = None
        self._view: BookView | None = None
        self._deltas: dict[int, str | None] = {}

    def update(self, payload: dict[str, Any]) -> None:
        self._version += 1
        self._payload, self._view, self._deltas = payload, None, {}

    @property
    def current(self) -> BookView | None:
        if self._view is None and self._payload is not None:
            self._view = BookView.from_payload(self._version, self._payload)
        return self._view

    def delta_json(self, old: BookView) -> str | None:
        """The delta from ``old`` to the current book (``None``: nothing visible changed)."""
        if old.version in self._deltas:
            return self._deltas[old.version]
        new = self.current
        assert new is not None
        bids, asks = diff_levels(old.bids, new.bids), diff_levels(old.asks, new.asks)
        encoded = dumps({**new.meta, "bids": bids, "asks": asks}) if bids or asks else None
        self._deltas[old.version] = encoded
        return encoded


@dataclass(slots=True)
class BookCursor:
    """What one client was last sent on one ``orderbook`` channel."""

    channel_json: str  # the channel's name, JSON-encoded once
    last: BookView | None = None
    seq: int = 0

    def reset(self) -> None:
        self.last = None

    def render(self, feed: BookFeed) -> str | None:
        """The next frame for this client: a snapshot, a delta, or nothing new."""
        view = feed.current
        if view is None or (self.last is not None and self.last.version == view.version):
            return None
        if self.last is None:
            self.last = view
            self.seq += 1
            return data_frame("snapshot", self.channel_json, self.seq, view.snapshot_json())
        delta = feed.delta_json(self.last)
        self.last = view
        if delta is None:
            return None
        self.seq += 1
        return data_frame("delta", self.channel_json, self.seq, delta)
