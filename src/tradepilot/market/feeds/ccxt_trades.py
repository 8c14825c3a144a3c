"""Trades from ccxt: conversion, de-duplication and gap detection per symbol."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timezone
from typing import Any

from tradepilot.market.feeds.ccxt_venues import to_decimal
from tradepilot.market.types import Trade


def trade_from_ccxt(venue: str, symbol: str, raw: dict[str, Any], now: datetime) -> Trade | None:
    """A ccxt unified trade → :class:`Trade` (``None`` if it lacks an id, a price or an amount)."""
    price, amount = to_decimal(raw.get("price")), to_decimal(raw.get("amount"))
    if price is None or amount is None or raw.get("id") is None:
        return None
    ts = raw.get("timestamp")
    return Trade(venue=venue, symbol=symbol, id=str(raw["id"]), price=price, quantity=amount,
                 side="sell" if raw.get("side") == "sell" else "buy",
                 ts=datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts else now)


def trade_order(raw: dict[str, Any]) -> tuple[int, int, str]:
    """Sort key: time, then numeric id."""
    trade_id = str(raw.get("id"))
    return (raw.get("timestamp") or 0, int(trade_id) if trade_id.isdigit() else -1, trade_id)


class TradeSequencer:
    """Which trades are new, and — where the venue's ids are consecutive — which were missed.

    With ``sequential_ids`` a trade at or below the last id is a repeat and one beyond
    ``last + 1`` reveals a gap; otherwise the last ``remember`` ids per symbol catch repeats.
    """

    def __init__(self, *, sequential_ids: bool, remember: int = 5000) -> None:
        self.sequential_ids = sequential_ids
        self.remember = remember
        self._last: dict[str, int] = {}
        self._seen: dict[str, tuple[deque[str], set[str]]] = {}

    def check(self, trade: Trade) -> tuple[bool, tuple[int, int] | None]:
        """``(new, gap)``: ``gap`` is the ``(after, before)`` ids around the missing ones.

        A new trade is recorded as seen; call it once per trade, in id order.
        """
        if not self.sequential_ids:
            order, seen = self._seen.setdefault(trade.symbol, (deque(), set()))
            if trade.id in seen:
                return False, None
            order.append(trade.id)
            seen.add(trade.id)
            if len(order) > self.remember:
                seen.discard(order.popleft())
            return True, None
        new_id = int(trade.id)
        last = self._last.get(trade.symbol)
        if last is not None and new_id <= last:
            return False, None
        self._last[trade.symbol] = new_id
        return True, ((last, new_id) if last is not None and new_id > last + 1 else None)
