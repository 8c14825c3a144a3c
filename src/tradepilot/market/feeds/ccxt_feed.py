"""The exchange venue: real market data through ccxt.

One watcher task per (symbol, channel) feeds a shared queue that :meth:`ExchangeFeed.events`
drains:

- **books** — ``ccxt.pro``'s ``watch_order_book`` where the venue has websockets (ccxt keeps
  the book from the REST snapshot and the diff stream and raises ``ChecksumError`` on an
  update-id gap); otherwise ``fetch_order_book`` every ``poll_seconds``. Each update becomes
  an :class:`OrderBook` of the top ``depth`` levels with ``seq`` = the venue's update id.
- **trades** — ``watch_trades`` or ``fetch_trades`` polling, de-duplicated by id. Where the
  venue's trade ids are consecutive (:class:`~.ccxt_venues.VenueProfile`), a hole is a gap:
  the missing trades are fetched over REST and played in order before the new ones.

Errors are translated at this boundary (:mod:`.ccxt_errors`) and decide what happens next:
a temporary error (network, timeout, maintenance, a dropped connection) is retried after an
exponential back-off with jitter (``backoff_initial_seconds`` doubling up to
``backoff_max_seconds``; a rate limit waits at least its ``Retry-After``); ``BookOutOfSync``
(a gap, or a crossed book) resyncs at once: ccxt drops the book, subscribes again and fetches
a new snapshot; an authentication or bad-symbol error stops that watcher and is kept in
:attr:`ExchangeFeed.stats` ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import ccxt

from tradepilot.config import Settings
from tradepilot.core.clock import Clock, LiveClock
from tradepilot.market.feeds.ccxt_errors import (
    BookOutOfSync,
    ExchangeError,
    ExchangeRateLimited,
    ExchangeTemporaryError,
    ccxt_boundary,
    translate,
)
from tradepilot.market.feeds.ccxt_trades import TradeSequencer, trade_from_ccxt, trade_order
from tradepilot.market.feeds.ccxt_venues import (
    create_exchange,
    instrument_from_market,
    profile_for,
    to_decimal,
)
from tradepilot.market.types import Instrument, Level, MarketEvent, OrderBook, Trade

logger = logging.getLogger("tradepilot.market.ccxt")

Sleep = Callable[[float], Awaitable[None]]
_STOP = object()


@dataclass(frozen=True)
class ExchangeFeedConfig:
    exchange: str = "binance"  # a ccxt exchange id
    symbols: tuple[str, ...] = ("BTC/USDT",)  # ccxt unified symbols
    venue: str | None = None  # our venue name; defaults to the exchange id
    websocket: bool = True  # ccxt.pro streams where the venue has them; False: REST polling
    books: bool = True
    trades: bool = True
    depth: int = 20  # levels per side in each OrderBook event
    poll_seconds: float = 1.0  # REST polling interval
    rest_url: str | None = None  # point the venue elsewhere (proxy, testnet, test server)
    ws_url: str | None = None
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_pending_books: int = 1000  # queued books beyond this are dropped (trades never are)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ExchangeFeedConfig:
        """``market_exchange_<field>`` settings (``market_exchange`` for the id) win over the defaults;
        the symbols are the platform's ``market_symbols``."""
        values: dict[str, Any] = {}
        symbols = getattr(settings, "market_symbols", None)
        if symbols:
            values["symbols"] = tuple(symbols)
        for name in cls.__dataclass_fields__:
            setting = "market_exchange" if name == "exchange" else f"market_exchange_{name}"
            value = getattr(settings, setting, None)
            if value is not None:
                values[name] = tuple(value) if name == "symbols" else value
        return replace(cls(**values), **overrides)


@dataclass
class FeedStats:
    reconnects: int = 0  # temporary errors followed by a retry
    resyncs: int = 0  # books thrown away for a new snapshot
    trade_gaps: int = 0
    trades_backfilled: int = 0
    trades_lost: int = 0  # missing from a gap and no longer fetchable
    books_dropped: int = 0  # the consumer was too slow
    last_error: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # "BTC/USDT book" → permanent error


class ExchangeFeed:
    """A :class:`~tradepilot.market.types.MarketFeed` for one ccxt venue."""

    def __init__(self, config: ExchangeFeedConfig, *, exchange: Any = None, clock: Clock | None = None,
                 sleep: Sleep | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        self.venue = config.venue or config.exchange
        self.profile = profile_for(config.exchange)
        self._owns_exchange = exchange is None
        self.exchange = exchange or self._new_exchange()
        self._closed = False
        self.stats = FeedStats()
        self._clock = clock or LiveClock()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pending_books = 0
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_seq: dict[str, int] = {}
        self._sequencer = TradeSequencer(sequential_ids=self.profile.sequential_trade_ids)
        self._last_levels: dict[str, tuple[tuple[Level, ...], tuple[Level, ...]]] = {}
        self._resync_pending: set[str] = set()  # symbols whose ccxt book must be dropped first

    def _new_exchange(self) -> Any:
        return create_exchange(self.config.exchange, websocket=self.config.websocket,
                               rest_url=self.config.rest_url, ws_url=self.config.ws_url)

    def streams(self, capability: str) -> bool:
        """Whether a channel comes over websockets (``watchOrderBook`` / ``watchTrades``), else REST polling."""
        return self.config.websocket and bool(getattr(self.exchange, "has", {}).get(capability))

    @property
    def streaming(self) -> bool:
        """Whether books and trades both come over websockets."""
        return self.streams("watchOrderBook") and self.streams("watchTrades")

    async def instruments(self) -> list[Instrument]:
        """The configured symbols as the venue lists them (``load_markets``); unlisted ones are skipped.

        Temporary errors are retried with back-off until the feed is stopped: nothing can start
        without the venue's filters.
        """
        markets = await self._load_markets()
        mode = self.exchange.precisionMode
        found = []
        for symbol in self.config.symbols:
            market = markets.get(symbol)
            if market is None:
                logger.error("%s does not list %s", self.venue, symbol)
                self.stats.failed[f"{symbol} market"] = f"unknown_symbol: {self.venue} does not list {symbol}"
                continue
            found.append(instrument_from_market(self.venue, market, mode))
        return found

    async def all_instruments(self) -> list[Instrument]:
        """Every spot market of the venue."""
        markets = await self._load_markets()
        mode = self.exchange.precisionMode
        return [instrument_from_market(self.venue, m, mode) for m in markets.values() if m.get("spot", True)]

    async def _load_markets(self) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                with ccxt_boundary(self.venue):
                    return await self.exchange.load_markets()
            except ExchangeTemporaryError as error:
                if self._stopped.is_set():
                    raise
                self.stats.reconnects += 1
                self.stats.last_error = f"markets: {error.detail}"
                delay = self._backoff(attempt, error)
                attempt += 1
                logger.warning("%s markets: %s; retrying in %.2fs", self.venue, error.detail, delay)
                await self._pause(delay)

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._queue.put_nowait(_STOP)
        self._closed = True
        try:
            await self.exchange.close()
        except Exception:  # closing is best effort
            logger.debug("closing %s failed", self.venue, exc_info=True)

    async def events(self) -> AsyncIterator[MarketEvent]:  # type: ignore[override]
        """Books and trades until :meth:`stop`. A stopped feed can be iterated again (a new session:
        the feed owner does so when it wins the lease back); ids and ``seq`` carry on from before."""
        if self._tasks and not self._stopped.is_set():
            raise RuntimeError("events() of an ExchangeFeed is already being iterated")
        if self._stopped.is_set():
            undelivered = []  # trades accepted but not yet handed out: the new session starts with them
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, Trade):
                    undelivered.append(item)
            self._stopped = asyncio.Event()
            self._tasks, self._queue, self._pending_books = [], asyncio.Queue(), 0
            for trade in undelivered:
                self._queue.put_nowait(trade)
            if self._closed and self._owns_exchange:
                self.exchange = self._new_exchange()
            self._closed = False
        for symbol in self.config.symbols:
            if self.config.books:
                self._spawn(f"{symbol} book", self._book_step(symbol))
            if self.config.trades:
                self._spawn(f"{symbol} trades", self._trade_step(symbol))
        stopped, queue = self._stopped, self._queue  # this session's
        try:
            while True:
                item = await queue.get()
                if item is _STOP:
                    return
                if isinstance(item, OrderBook):
                    self._pending_books -= 1
                yield item
        finally:
            if stopped is self._stopped:  # an abandoned iterator must not stop a later session
                await self.stop()

    # --- supervision -------------------------------------------------------------------

    def _spawn(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(name, step), name=f"{self.venue} {name}"))

    async def _supervise(self, name: str, step: Callable[[], Awaitable[None]]) -> None:
        attempt = 0
        while not self._stopped.is_set():
            try:
                await step()
                attempt = 0
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ExchangeError):
                    error = exc
                elif isinstance(exc, ccxt.BaseError):
                    error = translate(exc, venue=self.venue)
                else:  # a bug of ours or an unexpected library error: keep going, loudly
                    logger.exception("%s %s: unexpected error", self.venue, name)
                    error = ExchangeTemporaryError(f"{type(exc).__name__}: {exc}", venue=self.venue)
                self.stats.last_error = f"{name}: {error.detail}"
            if isinstance(error, BookOutOfSync):
                self.stats.resyncs += 1
                logger.warning("%s %s out of sync (%s): resyncing", self.venue, name, error.detail)
                continue
            if not error.retryable:
                self.stats.failed[name] = f"{error.code}: {error.detail}"
                logger.error("%s %s stopped: %s", self.venue, name, error.detail)
                return
            self.stats.reconnects += 1
            delay = self._backoff(attempt, error)
            attempt += 1
            logger.warning("%s %s: %s; retrying in %.2fs", self.venue, name, error.detail, delay)
            await self._pause(delay)

    def _backoff(self, attempt: int, error: ExchangeError) -> float:
        """Exponential with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(self.config.backoff_max_seconds, self.config.backoff_initial_seconds * 2**attempt)
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if isinstance(error, ExchangeRateLimited) and error.retry_after:
            delay = max(delay, error.retry_after)
        return delay

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)
        except TimeoutError:
            pass

    # --- books ---------------------------------------------------------------------------

    def _book_step(self, symbol: str) -> Callable[[], Awaitable[None]]:
        async def watch() -> None:
            raw = await self.exchange.watch_order_book(symbol)
            book = self._book(symbol, raw)
            if book is not None and self._check_uncrossed(book):
                self._emit_book(book)

        async def poll() -> None:
            raw = await self.exchange.fetch_order_book(symbol, self.config.depth)
            book = self._book(symbol, raw)
            if book is not None:
                self._emit_book(book)
            await self._pause(self.config.poll_seconds)

        async def crossed_resync() -> None:
            await self._drop_ccxt_book(symbol)
            raise BookOutOfSync(f"{symbol} book crossed", venue=self.venue)

        async def step() -> None:
            if symbol in self._resync_pending:
                self._resync_pending.discard(symbol)
                await crossed_resync()
            await (watch() if self.streams("watchOrderBook") else poll())

        return step

    def _book(self, symbol: str, raw: dict) -> OrderBook | None:
        """A copy of ccxt's live book (it keeps changing) as an OrderBook; None if nothing new."""
        depth = self.config.depth
        bids = _levels(raw.get("bids", []), depth)
        asks = _levels(raw.get("asks", []), depth)
        nonce = raw.get("nonce")
        last = self._last_seq.get(symbol)
        if nonce is None:  # venues without update ids: number the changes ourselves
            if self._last_levels.get(symbol) == (bids, asks):
                return None
            self._last_levels[symbol] = (bids, asks)
            seq = (last or 0) + 1
        else:
            seq = int(nonce)
            if last is not None and seq <= last:
                return None
        self._last_seq[symbol] = seq
        ts = raw.get("timestamp")
        when = datetime.fromtimestamp(ts / 1000, tz=timezone.utc) if ts else self._clock.now()
        return OrderBook(venue=self.venue, symbol=symbol, seq=seq, bids=bids, asks=asks, ts=when)

    def _check_uncrossed(self, book: OrderBook) -> bool:
        if book.bids and book.asks and book.bids[0][0] >= book.asks[0][0]:
            self._resync_pending.add(book.symbol)
            return False
        return True

    async def _drop_ccxt_book(self, symbol: str) -> None:
        """Make ccxt forget the book so that the next watch subscribes again and refetches a snapshot."""
        if self.exchange.has.get("unWatchOrderBook"):
            try:
                await self.exchange.un_watch_order_book(symbol)
            except Exception:
                logger.debug("%s: unWatchOrderBook(%s) failed", self.venue, symbol, exc_info=True)

    def _emit_book(self, book: OrderBook) -> None:
        if self._pending_books >= self.config.max_pending_books:
            self.stats.books_dropped += 1
            return
        self._pending_books += 1
        self._queue.put_nowait(book)

    # --- trades --------------------------------------------------------------------------

    def _trade_step(self, symbol: str) -> Callable[[], Awaitable[None]]:
        async def watch() -> None:
            raw = await self.exchange.watch_trades(symbol)
            await self._take_trades(symbol, raw, backfill=True)

        async def poll() -> None:
            raw = await self.exchange.fetch_trades(symbol, None, self.profile.trade_backfill_limit)
            await self._take_trades(symbol, raw, backfill=False)
            await self._pause(self.config.poll_seconds)

        async def step() -> None:
            await (watch() if self.streams("watchTrades") else poll())

        return step

    async def _take_trades(self, symbol: str, raw: list[dict], *, backfill: bool) -> None:
        now = self._clock.now()
        for item in sorted(raw, key=trade_order):
            trade = trade_from_ccxt(self.venue, symbol, item, now)
            if trade is None:
                continue
            new, gap = self._sequencer.check(trade)
            if gap is not None:
                await self._fill_gap(symbol, *gap, fetch=backfill)
            if new:
                self._queue.put_nowait(trade)

    async def _fill_gap(self, symbol: str, last: int, upto: int, *, fetch: bool) -> None:
        """Trades ``last+1 … upto-1`` were missed: fetch what the venue still has, count the rest."""
        self.stats.trade_gaps += 1
        missing = upto - last - 1
        found: list[Trade] = []
        if fetch:
            try:
                with ccxt_boundary(self.venue):
                    raw = await self.exchange.fetch_trades(symbol, None, self.profile.trade_backfill_limit)
                now = self._clock.now()
                found = [t for t in (trade_from_ccxt(self.venue, symbol, r, now) for r in sorted(raw, key=trade_order))
                         if t is not None and last < int(t.id) < upto]
            except ExchangeError as exc:
                logger.warning("%s %s: backfilling %d trades failed: %s", self.venue, symbol, missing, exc.detail)
        for trade in found:
            self._queue.put_nowait(trade)
        self.stats.trades_backfilled += len(found)
        self.stats.trades_lost += missing - len(found)
        logger.warning("%s %s: trade gap %d..%d, %d backfilled", self.venue, symbol, last + 1, upto - 1, len(found))


def _levels(raw: list, depth: int) -> tuple[Level, ...]:
    out = []
    for entry in raw[:depth]:
        price, qty = to_decimal(entry[0]), to_decimal(entry[1])
        assert price is not None and qty is not None
        out.append((price, qty))
    return tuple(out)

