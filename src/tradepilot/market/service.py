"""``MarketService``: the market as every replica sees it (``runtime.services["market"]``).

Its caches — tickers, last prices, order books, recent trades, open candles — are filled from
the bus (``market.*`` events) on every replica, the feed's owner included, so all replicas
answer alike. The instrument registry comes from the ``market_instrument`` table (written by
the owner), re-read every ``market_instruments_refresh_seconds``. Candles come from the
candle store, overlaid with the bars heard on the bus that the owner has not flushed yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.core.bus import Subscription
from tradepilot.core.errors import NotFound
from tradepilot.core.events import Event
from tradepilot.market import payloads
from tradepilot.market.frame import BarFrame, to_ms
from tradepilot.market.models import MarketInstrument
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar, Instrument, OrderBook, Ticker, Trade, topic_to_symbol

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.market")

RECENT_TRADES = 1000
LIVE_BARS = 300  # bars per (symbol, timeframe) kept from the bus, newest last
TradeCallback = Callable[[Trade], None]
BookCallback = Callable[[OrderBook], None]


def normalize_symbol(text: str) -> str:
    """``btc-usdt``, ``BTC/USDT``, ``BTC%2FUSDT`` (already decoded) → ``BTC/USDT``."""
    value = text.strip().upper()
    return value if "/" in value else topic_to_symbol(value)


class MarketService:
    def __init__(self, runtime: Runtime, *, venue: str, store: CandleStore) -> None:
        self.runtime = runtime
        self.venue = venue
        self.candles = store
        self._instruments: dict[str, Instrument] = {}
        self._tickers: dict[str, Ticker] = {}
        self._last: dict[str, Decimal] = {}
        self._books: dict[str, OrderBook] = {}
        self._trades: dict[str, deque[Trade]] = {}
        self._trade_ids: dict[str, set[str]] = {}
        self._bars: dict[tuple[str, str], OrderedDict[int, Bar]] = {}
        self._trade_callbacks: list[TradeCallback] = []
        self._book_callbacks: list[BookCallback] = []
        self._subs: list[Subscription] = []
        self._refresher: asyncio.Task[None] | None = None
        self._ticker_seen = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        handlers = {payloads.TRADE: self._on_trade, payloads.BOOK: self._on_book,
                    payloads.TICKER: self._on_ticker, payloads.CANDLE: self._on_candle}
        for kind, handler in handlers.items():
            self._subs.append(await self.runtime.bus.subscribe(payloads.pattern(kind), handler))
        try:
            await self.reload_instruments()
        except Exception:  # e.g. an unmigrated database: the owner (or a local feed) fills the registry
            logger.warning("could not load instruments from the database", exc_info=True)
        self._refresher = asyncio.create_task(self._refresh_forever(), name="market-instruments")

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.runtime.settings.market_instruments_refresh_seconds)
            try:
                await self.reload_instruments()
            except Exception:
                logger.warning("reloading instruments failed", exc_info=True)

    # -- instruments ----------------------------------------------------------------------

    async def reload_instruments(self) -> None:
        async with self.runtime.db.session() as session:
            rows = (await session.execute(
                select(MarketInstrument).where(MarketInstrument.venue == self.venue))).scalars().all()
        if rows:
            self.set_instruments([Instrument(venue=r.venue, symbol=r.symbol, base=r.base, quote=r.quote,
                                             tick_size=r.tick_size, step_size=r.step_size,
                                             min_notional=r.min_notional, status=r.status)  # type: ignore[arg-type]
                                  for r in rows])

    def set_instruments(self, instruments: Iterable[Instrument]) -> None:
        self._instruments = {i.symbol: i for i in sorted(instruments, key=lambda i: i.symbol)}

    def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    def instrument(self, symbol: str) -> Instrument:
        """The instrument, by ``BTC/USDT`` or ``BTC-USDT`` (any case); NotFound ``unknown_symbol``."""
        found = self._instruments.get(normalize_symbol(symbol))
        if found is None:
            raise NotFound(f"Unknown symbol {symbol!r} on {self.venue}.", code="unknown_symbol")
        return found

    # -- live state -----------------------------------------------------------------------

    def ticker(self, symbol: str) -> Ticker | None:
        return self._tickers.get(normalize_symbol(symbol))

    def last_price(self, symbol: str) -> Decimal | None:
        return self._last.get(normalize_symbol(symbol))

    def order_book(self, symbol: str, depth: int = 50) -> OrderBook | None:
        book = self._books.get(normalize_symbol(symbol))
        if book is None or depth >= max(len(book.bids), len(book.asks)):
            return book
        return OrderBook(venue=book.venue, symbol=book.symbol, seq=book.seq, bids=book.bids[:depth],
                         asks=book.asks[:depth], ts=book.ts)

    def recent_trades(self, symbol: str, limit: int = 100) -> list[Trade]:
        """Newest first."""
        trades = self._trades.get(normalize_symbol(symbol))
        if not trades:
            return []
        return [trades[-1 - i] for i in range(min(limit, len(trades)))]

    def live_bars(self, symbol: str, timeframe: str) -> list[Bar]:
        """Bars of ``symbol`` heard on the bus (open and recently closed), oldest first."""
        return list(self._bars.get((normalize_symbol(symbol), timeframe), {}).values())

    def subscribe_trades(self, callback: TradeCallback) -> Callable[[], None]:
        """Call ``callback`` for every trade (after the caches have it); returns an unsubscriber."""
        self._trade_callbacks.append(callback)
        return lambda: self._trade_callbacks.remove(callback)

    def subscribe_books(self, callback: BookCallback) -> Callable[[], None]:
        self._book_callbacks.append(callback)
        return lambda: self._book_callbacks.remove(callback)

    async def wait_for_prices(self, timeout: float = 10.0) -> None:
        """Until a ticker arrived (start-up; tests)."""
        await asyncio.wait_for(self._ticker_seen.wait(), timeout)

    # -- candles --------------------------------------------------------------------------

    async def read_candles(self, symbol: str, timeframe: str, start: datetime | None = None,
                           end: datetime | None = None, limit: int | None = None) -> list[Bar]:
        """Stored bars overlaid with the live ones from the bus, ``start <= open_time < end``."""
        symbol = normalize_symbol(symbol)
        live = [b for b in self.live_bars(symbol, timeframe)
                if (start is None or b.open_time >= start) and (end is None or b.open_time < end)]
        extra = None if limit is None else limit + len(live)
        frame: BarFrame = await asyncio.to_thread(self.candles.read, symbol, timeframe, start, end, extra)
        now_ms = to_ms(self.runtime.clock.now())
        merged = {b.open_time: b for b in frame.to_bars(symbol, timeframe, now_ms=now_ms)}
        for bar in live:
            merged[bar.open_time] = bar
        bars = [merged[t] for t in sorted(merged)]
        if limit is not None and len(bars) > limit:
            bars = bars[:limit] if start is not None else bars[-limit:]
        return bars

    # -- bus handlers (every replica) -----------------------------------------------------

    async def _on_trade(self, event: Event) -> None:
        trade = _decoded(payloads.trade_from_payload, event)
        if trade is None:
            return
        if trade.venue != self.venue:
            return
        ids = self._trade_ids.setdefault(trade.symbol, set())
        if trade.id in ids:
            return  # at-least-once delivery somewhere upstream: once is enough
        recent = self._trades.setdefault(trade.symbol, deque())
        recent.append(trade)
        ids.add(trade.id)
        if len(recent) > RECENT_TRADES:
            ids.discard(recent.popleft().id)
        self._last[trade.symbol] = trade.price
        for callback in list(self._trade_callbacks):
            _safely(callback, trade)

    async def _on_book(self, event: Event) -> None:
        book = _decoded(payloads.book_from_payload, event)
        if book is None:
            return
        if book.venue != self.venue:
            return
        current = self._books.get(book.symbol)
        if current is not None and book.seq <= current.seq:
            return  # an older snapshot that arrived late
        self._books[book.symbol] = book
        for callback in list(self._book_callbacks):
            _safely(callback, book)

    async def _on_ticker(self, event: Event) -> None:
        ticker = _decoded(payloads.ticker_from_payload, event)
        if ticker is None:
            return
        if ticker.venue != self.venue:
            return
        current = self._tickers.get(ticker.symbol)
        if current is not None and ticker.ts < current.ts:
            return
        self._tickers[ticker.symbol] = ticker
        if ticker.last is not None:
            self._last[ticker.symbol] = ticker.last
        self._ticker_seen.set()

    async def _on_candle(self, event: Event) -> None:
        bar = _decoded(payloads.candle_from_payload, event)
        if bar is None:
            return
        bars = self._bars.setdefault((bar.symbol, bar.timeframe), OrderedDict())
        key = to_ms(bar.open_time)
        newest = next(reversed(bars)) if bars else None
        bars[key] = bar
        if newest is not None and key < newest and len(bars) > 1:  # out of order: keep them sorted
            bars = self._bars[(bar.symbol, bar.timeframe)] = OrderedDict(sorted(bars.items()))
        while len(bars) > LIVE_BARS:
            bars.popitem(last=False)

    def closed_live_bars(self) -> dict[tuple[str, str], list[Bar]]:
        """Closed bars heard on the bus, per (symbol, timeframe): a new owner stores them first."""
        return {key: [b for b in bars.values() if b.closed] for key, bars in self._bars.items()}


def _decoded(decode: Callable[[dict[str, Any]], Any], event: Event) -> Any:
    """The event's payload decoded, or None (logged) when it is not a market payload we publish."""
    try:
        return decode(event.payload)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        logger.debug("ignoring a malformed market event", extra={"topic": event.topic, "event_id": event.id})
        return None


def _safely(callback: Callable[[Any], None], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        logger.exception("market callback failed")
