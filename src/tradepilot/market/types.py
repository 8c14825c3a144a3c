"""The market's vocabulary, shared by feeds, the candle store, the paper exchange and streaming.

Prices and quantities are ``Decimal`` (exact, like every amount of money); analytics convert
to numpy floats at their boundary. Timestamps are aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

Side = Literal["buy", "sell"]
Level = tuple[Decimal, Decimal]  # (price, quantity)
TIMEFRAMES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}


@dataclass(frozen=True, slots=True)
class Instrument:
    venue: str
    symbol: str  # ccxt unified form: BTC/USDT
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    status: Literal["trading", "halted"] = "trading"


@dataclass(frozen=True, slots=True)
class Trade:
    venue: str
    symbol: str
    id: str
    price: Decimal
    quantity: Decimal
    side: Side  # the taker's side
    ts: datetime


@dataclass(frozen=True, slots=True)
class OrderBook:
    """An L2 book: bids best (highest) first, asks best (lowest) first. ``seq`` increases per update."""

    venue: str
    symbol: str
    seq: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts: datetime


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    timeframe: str
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = True


@dataclass(frozen=True, slots=True)
class Ticker:
    """Best bid/ask, last trade and rolling 24-hour figures of one symbol (``None``: not known yet)."""

    venue: str
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    open_24h: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal
    change_24h_pct: Decimal | None
    ts: datetime


MarketEvent = Trade | OrderBook


class MarketFeed(Protocol):
    """A source of market data for one venue (simulated, replay, or an exchange through ccxt)."""

    venue: str

    async def instruments(self) -> list[Instrument]: ...

    def events(self) -> AsyncIterator[MarketEvent]:
        """Trades and book updates in the order they happened, until the feed is stopped."""
        ...

    async def stop(self) -> None: ...


def symbol_to_topic(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC-USDT``: topics and URL paths use the dash form."""
    return symbol.replace("/", "-")


def topic_to_symbol(value: str) -> str:
    return value.replace("-", "/")
