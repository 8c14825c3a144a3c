"""A restartable picture of the engine, and its JSON form (decimals as strings, exact).

The persistence layer normally re-arms the engine from its order rows with
:meth:`MatchingEngine.load`; a snapshot adds the market views (book, last trade, liquidity
already taken per account) and the engine's sequence counter, so that a restored engine
behaves exactly like the original on whatever comes next.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradepilot.market.types import OrderBook
from tradepilot.trading.engine.groups import OrderGroup
from tradepilot.trading.engine.orders import Order

_Taken = dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]]
_DECIMAL_FIELDS = ("quantity", "quote_quantity", "price", "stop_price", "trail_amount",
                   "trail_percent", "filled_quantity", "filled_notional", "fees", "water_mark")
_TIME_FIELDS = ("accepted_at", "expires_at")


def copy_order(order: Order) -> Order:
    return dataclasses.replace(order)


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    symbol: str
    book: OrderBook | None
    last_price: Decimal | None
    taken: _Taken = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    orders: tuple[Order, ...]
    groups: tuple[OrderGroup, ...]
    markets: tuple[MarketSnapshot, ...]
    seq: int
    now: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "orders": [order_to_dict(o) for o in self.orders],
            "groups": [{"id": g.id, "kind": str(g.kind), "entry_id": g.entry_id,
                        "exit_ids": list(g.exit_ids)} for g in self.groups],
            "markets": [_market_to_dict(m) for m in self.markets],
            "seq": self.seq,
            "now": _time_out(self.now),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSnapshot:
        return cls(
            orders=tuple(order_from_dict(o) for o in data["orders"]),
            groups=tuple(OrderGroup(g["id"], g["kind"], g["entry_id"], tuple(g["exit_ids"]))
                         for g in data["groups"]),
            markets=tuple(_market_from_dict(m) for m in data["markets"]),
            seq=int(data["seq"]),
            now=_time_in(data["now"]),
        )


def order_to_dict(order: Order) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(order):
        value = getattr(order, f.name)
        if f.name in _DECIMAL_FIELDS:
            value = None if value is None else str(value)
        elif f.name in _TIME_FIELDS:
            value = _time_out(value)
        elif value is not None and not isinstance(value, bool | int):
            value = str(value)
        out[f.name] = value
    return out


def order_from_dict(data: dict[str, Any]) -> Order:
    values = dict(data)
    for name in _DECIMAL_FIELDS:
        if values.get(name) is not None:
            values[name] = Decimal(values[name])
    for name in _TIME_FIELDS:
        values[name] = _time_in(values.get(name))
    return Order(**values)


def _time_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _levels_out(levels: tuple[tuple[Decimal, Decimal], ...]) -> list[list[str]]:
    return [[str(p), str(q)] for p, q in levels]


def _levels_in(levels: list[list[str]]) -> tuple[tuple[Decimal, Decimal], ...]:
    return tuple((Decimal(p), Decimal(q)) for p, q in levels)


def _market_to_dict(m: MarketSnapshot) -> dict[str, Any]:
    book = m.book
    return {
        "symbol": m.symbol,
        "book": None if book is None else {
            "venue": book.venue, "symbol": book.symbol, "seq": book.seq, "ts": _time_out(book.ts),
            "bids": _levels_out(book.bids), "asks": _levels_out(book.asks)},
        "last_price": None if m.last_price is None else str(m.last_price),
        "taken": {account: [{str(p): str(q) for p, q in side.items()} for side in sides]
                  for account, sides in m.taken.items()},
    }


def _market_from_dict(data: dict[str, Any]) -> MarketSnapshot:
    raw = data["book"]
    book = None if raw is None else OrderBook(raw["venue"], raw["symbol"], int(raw["seq"]),
                                              _levels_in(raw["bids"]), _levels_in(raw["asks"]),
                                              _time_in(raw["ts"]))  # type: ignore[arg-type]
    taken: _Taken = {}
    for account, (bids, asks) in data["taken"].items():
        taken[account] = ({Decimal(p): Decimal(q) for p, q in bids.items()},
                          {Decimal(p): Decimal(q) for p, q in asks.items()})
    last = data["last_price"]
    return MarketSnapshot(data["symbol"], book, None if last is None else Decimal(last), taken)
