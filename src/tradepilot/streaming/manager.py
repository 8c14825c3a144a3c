"""``StreamingManager``: live streams for code inside the platform, and pushes to users.

``runtime.services["streaming"]``. Streams read the bus, so they work on any replica
whichever process owns the venue's feed. Like WebSocket clients, they never hold up the
bus: prices and books keep only the newest value per symbol for a slow reader; trades and
account events are bounded, and a reader that falls that far behind gets ``StreamOverflow``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from tradepilot.core.bus import Subscription
from tradepilot.core.events import Event, Topics
from tradepilot.runtime import Runtime
from tradepilot.streaming.client import SendQueue
from tradepilot.streaming.hub import StreamHub
from tradepilot.streaming.protocol import BROADCAST_TOPIC, topic_symbol

T = TypeVar("T")
Selector = Callable[[Event], "tuple[str | None, Any] | None"]  # (conflation key or None, item)


class StreamOverflow(Exception):
    """The reader fell more than ``limit`` items behind a stream that must not drop any."""


@dataclass(frozen=True, slots=True)
class MarketUpdate:
    kind: str  # ticker, trade, book, candle
    symbol: str  # BTC/USDT
    payload: dict[str, Any]


class BusStream(Generic[T]):
    """An async iterator over selected bus events: ``async with stream: async for x in stream``."""

    def __init__(self, runtime: Runtime, patterns: list[str], select: Selector, *, limit: int = 1000) -> None:
        self._runtime, self._patterns, self._select = runtime, patterns, select
        self._queue = SendQueue(limit)
        self._subs: list[Subscription] = []
        self._opened = self._closed = self._overflowed = False

    async def open(self) -> BusStream[T]:
        if not self._opened:
            self._opened = True
            self._subs = [await self._runtime.bus.subscribe(p, self._on_event) for p in self._patterns]
        return self

    async def aclose(self) -> None:
        self._closed = True
        for sub in self._subs:
            await sub.close()
        self._subs = []
        self._queue.wake()

    async def __aenter__(self) -> BusStream[T]:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> BusStream[T]:
        return self

    async def __anext__(self) -> T:
        await self.open()
        while True:
            if self._overflowed:
                await self.aclose()
                raise StreamOverflow(f"more than {self._queue.limit} items behind")
            item = self._queue.pop()
            if item is not None:
                return item[1]  # type: ignore[no-any-return]
            if self._closed:
                raise StopAsyncIteration
            await self._queue.wait()

    async def _on_event(self, event: Event) -> None:
        selected = self._select(event)
        if selected is None or self._closed:
            return
        key, item = selected
        if key is not None:
            self._queue.put_latest(key, item)
        elif not self._queue.put(item):
            self._overflowed = True
            self._queue.wake()


def _market_update(event: Event) -> MarketUpdate | None:
    parts = event.topic.split(".")
    if len(parts) < 3:
        return None
    return MarketUpdate(kind=parts[1], symbol=parts[2].replace("-", "/"), payload=event.payload)


class StreamingManager:
    def __init__(self, runtime: Runtime, hub: StreamHub) -> None:
        self.runtime = runtime
        self.hub = hub

    @property
    def connected_clients(self) -> int:
        return len(self.hub.clients)

    def connections_of(self, user_id: uuid.UUID) -> int:
        return len(self.hub.clients_of(user_id))

    def connect_websocket(self, exchange: str, symbols: Iterable[str]) -> BusStream[MarketUpdate]:
        """Everything ``exchange`` publishes for ``symbols``: tickers and books (newest per
        symbol for a slow reader), trades and candles (all of them).

        No exchange socket is opened here: the venue's feed runs in the one process holding
        its lease and publishes to the bus; this stream reads the bus on any replica.
        """
        dashed = {topic_symbol(s.upper()) for s in symbols}

        def select(event: Event) -> tuple[str | None, Any] | None:
            update = _market_update(event)
            if update is None or topic_symbol(update.symbol) not in dashed:
                return None
            venue = event.payload.get("venue")
            if venue is not None and venue != exchange:
                return None
            conflate = update.kind in ("ticker", "book")
            return (f"{update.kind}:{update.symbol}" if conflate else None), update

        return BusStream(self.runtime, ["market.*"], select)

    def stream_prices(self, symbols: Iterable[str]) -> BusStream[dict[str, Any]]:
        """Ticker payloads of ``symbols``; a slow reader gets the newest per symbol."""
        patterns = [Topics.market("ticker", topic_symbol(s.upper())) for s in symbols]
        return BusStream(self.runtime, patterns, lambda e: (e.topic, e.payload))

    def stream_orderbook(self, symbol: str) -> BusStream[dict[str, Any]]:
        """Full top-50 book payloads of ``symbol``; a slow reader gets the newest."""
        topic = Topics.market("book", topic_symbol(symbol.upper()))
        return BusStream(self.runtime, [topic], lambda e: (e.topic, e.payload))

    def stream_trades(self, symbols: Iterable[str] | str) -> BusStream[dict[str, Any]]:
        """Every trade of ``symbols``, in order (``StreamOverflow`` if the reader falls behind)."""
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        patterns = [Topics.market("trade", topic_symbol(s.upper())) for s in names]
        return BusStream(self.runtime, patterns, lambda e: (None, e.payload))

    def stream_account_updates(self, user_id: uuid.UUID | str) -> BusStream[Event]:
        """The user's private events (orders, fills, positions, balances, notifications) as
        relayed from the outbox: at least once, so deduplicate by ``event.id`` or ``seq``."""
        return BusStream(self.runtime, [Topics.user(user_id, "*")], lambda e: (None, e))

    async def broadcast_to_users(self, message: dict[str, Any], user_ids: Iterable[uuid.UUID | str]) -> None:
        """Push ``message`` to every open connection of these users, on every replica
        (``{"type":"broadcast","data":message}``). Best effort: offline users miss it."""
        ids = [str(u) for u in user_ids]
        if ids:
            await self.runtime.bus.publish(Event(topic=BROADCAST_TOPIC, type="stream.broadcast",
                                                 payload={"message": message, "user_ids": ids}))
