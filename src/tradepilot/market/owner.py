"""The owner of a venue's feed: the one process (lease ``market-feed:<venue>``) that runs it.

Under the lease it registers the venue's instruments, lets the feed back-fill its history,
then turns the feed's events into the bus's ``market.*`` events — trades and books as they
come, tickers and open candles at most every ``market_ticker_interval_seconds`` /
``market_candle_publish_seconds`` of market time, closed candles at once — and writes closed
candles to the store every ``market_candle_flush_seconds``, fenced by the lease's token. It
publishes and never updates caches itself: every replica, this one included, learns the
market from the bus.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select

from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost
from tradepilot.core.money import EXACT
from tradepilot.market import payloads
from tradepilot.market.builder import CandleBuilder
from tradepilot.market.frame import BarFrame
from tradepilot.market.models import MarketInstrument
from tradepilot.market.service import MarketService
from tradepilot.market.store import CandleStore, StaleWriter
from tradepilot.market.types import Bar, Instrument, MarketEvent, MarketFeed, OrderBook, Ticker, Trade

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.market.owner")

PUBLISH_TIMEOUT = 5.0  # a bus that cannot take an event this long loses it (the bus is at-most-once)


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
        self.running = asyncio.Event()  # set once live events flow

    # -- under the lease ------------------------------------------------------------------

    async def run(self, lease: Lease) -> None:
        """The lease's work: set up, then relay the feed until cancelled (or the lease is lost)."""
        self.fence, self._lease = lease.token, lease
        logger.info("market feed owned", extra={"venue": self.feed.venue, "token": lease.token})
        flusher: asyncio.Task[None] | None = None
        try:
            await self._store_heard_bars()
            instruments = await self.feed.instruments()
            await self._register(lease, instruments)
            self.service.set_instruments(instruments)
            prepare = getattr(self.feed, "prepare", None)
            if prepare is not None:
                for symbol, bars in (await prepare(self.store, fence=self.fence)).items():
                    self.builder.seed(symbol, bars)
            flusher = asyncio.create_task(self._flush_forever(), name="market-candle-flush")
            self.running.set()
            async for event in self.feed.events():
                await self.handle(event)
        finally:
            self.running.clear()
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
        """After a takeover: the closed bars the previous owner published but may not have stored."""
        for (symbol, timeframe), bars in self.service.closed_live_bars().items():
            if bars:
                await asyncio.to_thread(self.store.write, symbol, timeframe, bars, fence=self.fence)

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
        """Write the closed bars gathered since the last flush (fenced by the lease token)."""
        pending, self._pending = self._pending, {}
        written = 0
        try:
            for (symbol, timeframe), bars in pending.items():
                frame = BarFrame.from_bars(bars)
                written += await asyncio.to_thread(self.store.write, symbol, timeframe, frame, fence=self.fence)
        except StaleWriter as exc:
            if self._lease is not None:
                self._lease.mark_lost(str(exc))  # stops this owner's work; the newer owner writes
            raise LeaseLost(str(exc)) from exc
        except BaseException:
            for key, bars in pending.items():  # keep them for the next attempt
                self._pending.setdefault(key, [])[:0] = bars
            raise
        return written

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_every)
            try:
                await self.flush()
            except LeaseLost:
                raise
            except Exception:
                logger.warning("candle flush failed; retrying", exc_info=True)
