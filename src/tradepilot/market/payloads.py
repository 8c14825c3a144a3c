"""The market's bus events: topics, payloads (plain JSON: decimals as strings, RFC 3339 UTC) and back.

The owner of a venue's feed publishes; every replica (the owner too) consumes with the
``*_from_payload`` functions, so all of them hold the same view of the market.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tradepilot.core.events import Event, Topics
from tradepilot.core.money import to_plain_string
from tradepilot.market.types import Bar, OrderBook, Ticker, Trade, symbol_to_topic

TRADE, BOOK, TICKER, CANDLE = "trade", "book", "ticker", "candle"
BOOK_DEPTH = 50


def rfc3339(moment: datetime) -> str:
    """``2024-08-09T00:00:00.123Z`` (milliseconds when present)."""
    moment = moment.astimezone(timezone.utc)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else to_plain_string(value)


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def pattern(kind: str) -> str:
    """The bus pattern for every symbol's events of one kind (``market.trade.*``)."""
    return Topics.market(kind, "*")


def trade_event(trade: Trade) -> Event:
    return Event(topic=Topics.market(TRADE, symbol_to_topic(trade.symbol)), type=TRADE, payload={
        "venue": trade.venue, "symbol": trade.symbol, "id": trade.id, "price": _s(trade.price),
        "quantity": _s(trade.quantity), "side": trade.side, "ts": rfc3339(trade.ts)})


def trade_from_payload(p: dict[str, Any]) -> Trade:
    return Trade(venue=p["venue"], symbol=p["symbol"], id=str(p["id"]), price=Decimal(p["price"]),
                 quantity=Decimal(p["quantity"]), side=p["side"], ts=parse_time(p["ts"]))


def book_event(book: OrderBook) -> Event:
    levels = lambda side: [[_s(p), _s(q)] for p, q in side[:BOOK_DEPTH]]  # noqa: E731
    return Event(topic=Topics.market(BOOK, symbol_to_topic(book.symbol)), type=BOOK, payload={
        "venue": book.venue, "symbol": book.symbol, "seq": book.seq, "bids": levels(book.bids),
        "asks": levels(book.asks), "ts": rfc3339(book.ts)})


def book_from_payload(p: dict[str, Any]) -> OrderBook:
    levels = lambda side: tuple((Decimal(a), Decimal(b)) for a, b in side)  # noqa: E731
    return OrderBook(venue=p["venue"], symbol=p["symbol"], seq=int(p["seq"]), bids=levels(p["bids"]),
                     asks=levels(p["asks"]), ts=parse_time(p["ts"]))


def ticker_event(ticker: Ticker) -> Event:
    return Event(topic=Topics.market(TICKER, symbol_to_topic(ticker.symbol)), type=TICKER, payload={
        "venue": ticker.venue, "symbol": ticker.symbol, "bid": _s(ticker.bid), "ask": _s(ticker.ask),
        "last": _s(ticker.last), "open_24h": _s(ticker.open_24h), "high_24h": _s(ticker.high_24h),
        "low_24h": _s(ticker.low_24h), "volume_24h": _s(ticker.volume_24h),
        "change_24h_pct": _s(ticker.change_24h_pct), "ts": rfc3339(ticker.ts)})


def ticker_from_payload(p: dict[str, Any]) -> Ticker:
    return Ticker(venue=p["venue"], symbol=p["symbol"], bid=_d(p["bid"]), ask=_d(p["ask"]), last=_d(p["last"]),
                  open_24h=_d(p["open_24h"]), high_24h=_d(p["high_24h"]), low_24h=_d(p["low_24h"]),
                  volume_24h=Decimal(p["volume_24h"]), change_24h_pct=_d(p["change_24h_pct"]),
                  ts=parse_time(p["ts"]))


def candle_event(bar: Bar) -> Event:
    return Event(topic=Topics.market(CANDLE, symbol_to_topic(bar.symbol), bar.timeframe), type=CANDLE, payload={
        "symbol": bar.symbol, "timeframe": bar.timeframe, "open_time": rfc3339(bar.open_time),
        "open": _s(bar.open), "high": _s(bar.high), "low": _s(bar.low), "close": _s(bar.close),
        "volume": _s(bar.volume), "closed": bar.closed})


def candle_from_payload(p: dict[str, Any]) -> Bar:
    return Bar(symbol=p["symbol"], timeframe=p["timeframe"], open_time=parse_time(p["open_time"]),
               open=Decimal(p["open"]), high=Decimal(p["high"]), low=Decimal(p["low"]), close=Decimal(p["close"]),
               volume=Decimal(p["volume"]), closed=bool(p["closed"]))
