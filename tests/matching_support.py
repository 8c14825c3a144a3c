"""Builders for the matching-engine tests: books, trades, orders and event filters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

from tradepilot.market.types import OrderBook, Trade
from tradepilot.trading.engine import EngineEvent, Fill, MatchingEngine, Order, OrderType

SYMBOL = "BTC/USDT"
T0 = datetime(2024, 8, 8, 12, 0, tzinfo=timezone.utc)
E = TypeVar("E")


def D(value: str | int) -> Decimal:
    return Decimal(value)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def book(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]], ts: datetime = T0,
         symbol: str = SYMBOL, seq: int = 1) -> OrderBook:
    return OrderBook("test", symbol, seq, tuple((D(p), D(q)) for p, q in bids),
                     tuple((D(p), D(q)) for p, q in asks), ts)


# bids 99×1, 98×2, 97×5 | asks 101×1, 102×2, 103×5
STANDARD = book([("99", "1"), ("98", "2"), ("97", "5")], [("101", "1"), ("102", "2"), ("103", "5")])

_trade_ids = iter(range(1, 10**9))


def trade(price: str, quantity: str = "1", ts: datetime = T0, side: str = "sell",
          symbol: str = SYMBOL, trade_id: str | None = None) -> Trade:
    return Trade("test", symbol, trade_id or f"m{next(_trade_ids)}", D(price), D(quantity),
                 side, ts)  # type: ignore[arg-type]


def order(order_id: str, side: str, kind: str, quantity: str | None = "1", *, price: str | None = None,
          stop: str | None = None, account: str = "a", symbol: str = SYMBOL, **extra: Any) -> Order:
    decimals = {k: (D(v) if isinstance(v, str) and k in ("quote_quantity", "trail_amount",
                                                         "trail_percent") else v)
                for k, v in extra.items()}
    return Order(order_id, account, symbol, side, OrderType(kind),  # type: ignore[arg-type]
                 quantity=None if quantity is None else D(quantity),
                 price=None if price is None else D(price), stop_price=None if stop is None else D(stop),
                 **decimals)  # type: ignore[arg-type]


def engine_with(market: OrderBook | None = STANDARD, **kwargs: Any) -> MatchingEngine:
    engine = MatchingEngine(**kwargs)
    if market is not None:
        engine.on_book(market)
    return engine


def of(kind: type[E], events: Iterable[EngineEvent]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def fills(events: Iterable[EngineEvent], order_id: str | None = None) -> list[tuple[Decimal, Decimal]]:
    """(price, quantity) of the fills, of one order or all."""
    return [(f.price, f.quantity) for f in of(Fill, events) if order_id is None or f.order_id == order_id]


def kinds(events: Iterable[EngineEvent]) -> list[str]:
    return [type(e).__name__ for e in events]
