"""The owner of a venue's feed: the one process (lease ``market-feed:<venue>``) that runs it.

Under the lease it registers the venue's instruments, lets the feed back-fill its history,
then turns the feed's events into the bus's ``market.*`` events — trades and books as they
come, tickers and open candles at most every ``market_ticker_interval_seconds`` /
``market_candle_publish_seconds`` of market time, closed candles at once — and writes closed
candles to the store every ``market_candle_flush_seconds``, fenced by the lease's token. It
publishes and never updates caches itself: every replica, this one included, learns the
market from the bus.

Stopping (``stop_market``, or the lease manager when the lease is lost) cancels :meth:`run`.
Cancellation alone is not enough on Python 3.11: ``asyncio.wait_for`` — which redis-py uses
for every command it sends — returns the result instead of raising when the cancellation
arrives just as the awaited operation completes, and the owner publishes almost all the time,
so the cancellation is swallowed more often than not and the owner went on relaying the feed
until ``stop_market`` gave up on it (15 s, and a task left behind that could hang the loop's
close). So the relay loop and every step of the set-up pass a :meth:`FeedOwner._checkpoint`,
which stops the owner when a stop was requested, the lease is lost, or the task carries a
cancellation request it never received. Store writes run in worker threads one partition at
a time and are waited for even when cancelled, so no write outlives the owner (see
docs/market-feeds.md, "Stopping the feed owner").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from sqlalchemy import select

from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost
from tradepilot.core.money import EXACT
from tradepilot.market import payloads
from tradepilot.market.builder import CandleBuilder
from tradepilot.market.frame import BarFrame
from tradepilot.market.models import MarketInstrument
from tradepilot.market.service import MarketService
from tradepilot.market.store import CandleStore, StaleWriter, partition_bounds
from tradepilot.market.types import (
    TIMEFRAMES,
    Bar,
    Instrument,
    MarketEvent,
    MarketFeed,
    OrderBook,
    Ticker,
    Trade,
)

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.market.owner")

PUBLISH_TIMEOUT = 5.0  # a bus that cannot take an event this long loses it (the bus is at-most-once)

T = TypeVar("T")


class OwnerStopping(asyncio.CancelledError):
    """Raised at a checkpoint: the owner must stop (a CancelledError, so it unwinds like one)."""


def lease_name(venue: str) -> str:
    return f"market-feed:{venue}"


class FeedOwner:
    def __init__(self, runtime: Runtime, feed: MarketFeed, service: MarketService, store: CandleStore) -> None:
        self.runtime = runtime
        self.feed = feed
        self.service = service
        self.store = store
        settings = runtime.settings
        self.ticker_every = timedelta(seconds=settings.market_ticker_interval_seconds)
        self.candles_every = timedelta(seconds=settings.market_candle_publish_seconds)
        self.flush_every = settings.market_candle_flush_seconds
        self.builder = CandleBuilder()
        self.fence: int | None = None
        self._lease: Lease | None = None
        self._best: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._last: dict[str, Decimal] = {}
        self._next_ticker: dict[str, datetime] = {}
        self._next_candles: dict[str, datetime] = {}
        self._pending: dict[tuple[str, str], list[Bar]] = {}
        self._stop_requested = False
        self.running = asyncio.Event()  # set once live events flow

    # -- stopping -------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to end at its next checkpoint (``stop_market`` calls this, then cancels).

        The flag is what makes a stop reliable: a cancellation can be lost inside a library
        (see the module docstring), the flag cannot. It is never cleared — a stopped owner's
        process is shutting down.
        """
        self._stop_requested = True

    def _checkpoint(self) -> None:
        """Raise if this owner must stop: a stop was requested, the lease is lost, or this task
        was cancelled but the cancellation was swallowed on the way (``Task.cancelling()`` stays
        above zero until someone consumes the request, and nothing here does)."""
        if self._lease is not None and not self._lease.held:
            raise LeaseLost(f"lease {self._lease.name!r} (token {self._lease.token}) is no longer held")
        task = asyncio.current_task()
        if self._stop_requested or (task is not None and task.cancelling()):
            raise OwnerStopping("the market feed owner is stopping")

    # -- under the lease ------------------------------------------------------------------

    async def run(self, lease: Lease) -> None:
        """The lease's work: set up, then relay the feed until cancelled (or the lease is lost)."""
        self.fence, self._lease = lease.token, lease
        logger.info("market feed owned", extra={"venue": self.feed.venue, "token": lease.token})
        flusher: asyncio.Task[None] | None = None
        try:
            self._checkpoint()
            await self._store_heard_bars()
            instruments = await self.feed.instruments()
            self._checkpoint()
            await self._register(lease, instruments)
            self._checkpoint()
            self.service.set_instruments(instruments)
            prepare = getattr(self.feed, "prepare", None)
            if prepare is not None:
                seeds = await prepare(self.store, fence=self.fence)
                self._checkpoint()
                for symbol, bars in seeds.items():
                    self.builder.seed(symbol, bars)
            flusher = asyncio.create_task(self._flush_forever(), name="market-candle-flush")
            self.running.set()
            async for event in self.feed.events():
                await self.handle(event)
                self._checkpoint()  # a cancellation swallowed while publishing ends the loop here
        finally:
            self.running.clear()
            # In a task of its own, waited for to the end: when a stop request ends the relay,
            # the lease manager's cancellation arrives during this wind-down, and it must not
            # cut the final flush short (those candles were published: they are acknowledged).
            await _to_completion(self._wind_down(lease, flusher))

    async def _wind_down(self, lease: Lease, flusher: asyncio.Task[None] | None) -> None:
        """Stop the feed and the periodic flush, then store the closed candles still pending."""
        await self.feed.stop()  # first: it also stops a back-fill still writing
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        if lease.held:
            try:
                await self.flush()
            except Exception:
                logger.warning("final candle flush failed", exc_info=True)

    async def _register(self, lease: Lease, instruments: list[Instrument]) -> None:
        """The venue's instruments into the registry (fenced); symbols no longer listed are halted."""
        now = self.runtime.clock.now()
        async with self.runtime.db.transaction() as session:
            await lease.assert_held(session)
            rows = {r.symbol: r for r in (await session.execute(
                select(MarketInstrument).where(MarketInstrument.venue == self.feed.venue))).scalars()}
            for inst in instruments:
                row = rows.pop(inst.symbol, None)
                if row is None:
                    row = MarketInstrument(venue=inst.venue, symbol=inst.symbol)
                    session.add(row)
                row.base, row.quote, row.status = inst.base, inst.quote, inst.status
                row.tick_size, row.step_size, row.min_notional = inst.tick_size, inst.step_size, inst.min_notional
                row.updated_at = now
            for row in rows.values():
                row.status, row.updated_at = "halted", now

    async def _store_heard_bars(self) -> None:
        """After a takeover: the closed bars the previous owner published but may not have stored.

        Up to ``LIVE_BARS`` bars per symbol and timeframe, which on a slow disk is seconds of
        partition rewrites, so it is written one partition at a time with a checkpoint between
        partitions: a stop meanwhile waits for one partition write, not for all of them. What
        is left unwritten is not lost: every replica heard the same bars, and the next owner
        stores them the same way first. Each partition write is atomic (write + rename), so the
        store only ever holds whole heard bars; 1m goes first for every symbol, so a stopped
        write leaves higher-timeframe gaps rather than higher timeframes without their minutes.
        """
        heard = self.service.closed_live_bars()
        order = sorted((key for key, bars in heard.items() if bars),
                       key=lambda key: (TIMEFRAMES_ORDER.get(key[1], len(TIMEFRAMES_ORDER)), key))
        for symbol, timeframe in order:
            frame = BarFrame.from_bars(heard[(symbol, timeframe)])
            for part in _partition_chunks(frame, timeframe):
                self._checkpoint()
                await self._write(symbol, timeframe, part)

    # -- events ---------------------------------------------------------------------------

    async def _publish(self, event: Event) -> None:
        try:
            # in this task (no inner task as with wait_for, which waits for that task on cancel:
            # a stop must never hang behind a publish)
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self.runtime.bus.publish(event)
        except TimeoutError:
            logger.warning("market event dropped: the bus did not take it in time", extra={"topic": event.topic})

    async def handle(self, event: MarketEvent) -> None:
        """One feed event → bus events (and candles). Tests drive the owner through this."""
        symbol = event.symbol
        if isinstance(event, Trade):
            await self._publish(payloads.trade_event(event))
            self._last[symbol] = event.price
            closed = self.builder.on_trade(event)
        elif isinstance(event, OrderBook):
            await self._publish(payloads.book_event(event))
            self._best[symbol] = (event.bids[0][0] if event.bids else None,
                                  event.asks[0][0] if event.asks else None)
            closed = self.builder.advance(symbol, event.ts)
        else:  # pragma: no cover - the vocabulary has two kinds
            return
        for bar in closed:
            await self._publish(payloads.candle_event(bar))
            self._pending.setdefault((symbol, bar.timeframe), []).append(bar)
        ts = event.ts
        if ts >= self._next_ticker.get(symbol, ts):
            self._next_ticker[symbol] = ts + self.ticker_every
            await self._publish(payloads.ticker_event(self.ticker(symbol, ts)))
        if closed or ts >= self._next_candles.get(symbol, ts):
            self._next_candles[symbol] = ts + self.candles_every
            for bar in self.builder.current(symbol):
                await self._publish(payloads.candle_event(bar))

    async def handle_all(self, events: list[MarketEvent]) -> None:
        for event in events:
            await self.handle(event)

    def ticker(self, symbol: str, ts: datetime) -> Ticker:
        stats = self.builder.day_stats(symbol)
        bid, ask = self._best.get(symbol, (None, None))
        last = self._last.get(symbol)
        change = None
        if last is not None and stats.open:
            change = ((last - stats.open) * 100 / stats.open).quantize(Decimal("0.0001"), context=EXACT)
        return Ticker(venue=self.feed.venue, symbol=symbol, bid=bid, ask=ask, last=last, open_24h=stats.open,
                      high_24h=stats.high, low_24h=stats.low, volume_24h=stats.volume, change_24h_pct=change, ts=ts)

    # -- candles to the store -------------------------------------------------------------

    async def flush(self) -> int:
        """Write the closed bars gathered since the last flush (fenced by the lease token).

        One partition per thread call, each waited for even if the flush is cancelled (see
        :meth:`_write`); bars of a key not completely written go back to the pending ones for
        the next attempt (rewriting a partition is idempotent), so an interrupted flush loses
        nothing and the final flush of :meth:`run` stores them. The writes of a flush are those
        of ``market_candle_flush_seconds`` of bars: a final flush on stop is short.
        """
        pending, self._pending = self._pending, {}
        done: set[tuple[str, str]] = set()
        written = 0
        try:
            for (symbol, timeframe), bars in pending.items():
                frame = BarFrame.from_bars(bars)
                for part in _partition_chunks(frame, timeframe):
                    written += await self._write(symbol, timeframe, part)
                done.add((symbol, timeframe))
        except StaleWriter as exc:
            if self._lease is not None:
                self._lease.mark_lost(str(exc))  # stops this owner's work; the newer owner writes
            raise LeaseLost(str(exc)) from exc
        except BaseException:
            for key, bars in pending.items():  # keep them for the next attempt
                if key not in done:
                    self._pending.setdefault(key, [])[:0] = bars
            raise
        return written

    async def _write(self, symbol: str, timeframe: str, frame: BarFrame) -> int:
        """``store.write`` (fenced) in a worker thread, waited for even when cancelled.

        A cancelled ``await asyncio.to_thread(...)`` returns at once but leaves the thread
        writing: it would outlive ``stop_market`` and the lease (racing the next owner's
        writes and the loop's executor shutdown). Callers pass one partition, so waiting for
        it keeps a stop prompt; the cancellation is re-raised once the write is over.
        """
        return await _finish_in_thread(self.store.write, symbol, timeframe, frame, fence=self.fence)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await self.flush()
            except LeaseLost:
                raise
            except Exception:
                logger.warning("candle flush failed; retrying", exc_info=True)


TIMEFRAMES_ORDER = {tf: i for i, tf in enumerate(sorted(TIMEFRAMES, key=TIMEFRAMES.__getitem__))}


def _partition_chunks(frame: BarFrame, timeframe: str) -> Iterator[BarFrame]:
    """``frame`` (sorted by time) cut at the store's partition bounds: one file write each."""
    i = 0
    while i < len(frame):
        _, end, _ = partition_bounds(int(frame.open_time[i]), timeframe)
        j = int(np.searchsorted(frame.open_time, end, side="left"))
        yield frame.take(slice(i, j))
        i = j


async def _finish_in_thread(func: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``func`` in a worker thread; a cancellation meanwhile is re-raised only once it returned."""
    return await _wait_out(asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs)))


async def _to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` in a task of its own; a cancellation meanwhile is re-raised only once it ended."""
    return await _wait_out(asyncio.ensure_future(coro))


async def _wait_out(future: asyncio.Future[T]) -> T:
    """Wait for ``future`` to finish even if cancelled meanwhile, then re-raise the cancellation.

    For work that must not be abandoned half-way and is short: one partition write, the final
    flush. The caller's cancellation is delayed, not lost.
    """
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})  # unlike awaiting the future, never cancels it
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        error = None if future.cancelled() else future.exception()
        if error is not None:  # superseded by the cancellation, but not silently
            logger.warning("work finished after a cancellation failed", exc_info=error)
        raise asyncio.CancelledError
    return future.result()
