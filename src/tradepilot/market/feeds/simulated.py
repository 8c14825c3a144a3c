"""The simulated venue (the embedded default): a seeded market that needs nothing outside.

Live, the market moves in ticks (``market_tick_interval_seconds``, aligned to the clock).
At each minute boundary the return model (``sim_model``) draws the minute's return for
every symbol at once (correlated, fat-tailed, with clustered volatility); within the
minute each symbol's mid price walks a Brownian bridge to that target, tick by tick, and
the order book (``sim_book``) follows it, producing the trades. So the 1m candles built
from live trades have the statistics of the back-filled history.

The feed is driven by :meth:`SimulatedFeed.step` (pure computation up to a given time), which
``events()`` calls on the clock's beat; tests call ``step`` directly with a test clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

import numpy as np

from tradepilot.core.clock import Clock
from tradepilot.market.feeds.sim_book import SimBook, poisson
from tradepilot.market.feeds.sim_history import HistoryPlan, Stopped, plan_history
from tradepilot.market.feeds.sim_model import MINUTE_MS, ModelState, ReturnModel, SymbolSpec, history_rng, spec_for
from tradepilot.market.frame import from_ms, to_ms
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar, Instrument, MarketEvent, OrderBook, Trade

logger = logging.getLogger("tradepilot.market.simulated")

VENUE = "simulated"
MAX_CATCH_UP_MS = 30_000  # a loop that stalled longer than this skips ahead instead of replaying
TOUCH_TRADES_PER_TICK = 1.5


class _Symbol:
    """The live state of one symbol: mid price (log), this minute's target, book, counters."""

    def __init__(self, spec: SymbolSpec, price: Decimal, tick_fraction: float, start_ms: int,
                 rng: np.random.Generator) -> None:
        self.spec = spec
        self.log_mid = math.log(float(price))
        self.target = self.log_mid
        self.sigma = spec.sigma
        tick_sigma = spec.sigma * float(price) / float(spec.tick_size) * math.sqrt(tick_fraction)
        self.book = SimBook(spec, float(price) / float(spec.tick_size), tick_sigma, rng)
        # both grow with the clock, so a new owner after a takeover continues above the old one
        self.seq = start_ms * 1000
        self.trade_id = start_ms * 1000


class SimulatedFeed:
    """A :class:`~tradepilot.market.types.MarketFeed` for the ``simulated`` venue."""

    venue = VENUE

    def __init__(self, symbols: list[str], *, seed: int, clock: Clock, tick_interval: float = 0.5,
                 backfill_days: float = 730.0) -> None:
        self.specs = [spec_for(s) for s in symbols]
        self.seed = seed
        self.clock = clock
        self.tick_ms = max(10, int(round(tick_interval * 1000)))
        if MINUTE_MS % self.tick_ms:
            raise ValueError("the tick interval must divide a minute (0.5 s, 1 s, 2 s, ...)")
        self.ticks_per_minute = MINUTE_MS // self.tick_ms
        self.backfill_days = backfill_days
        self._symbols: list[_Symbol] = []
        self._model = ReturnModel(self.specs)
        self._state: ModelState | None = None
        self._rng: np.random.Generator | None = None
        self._minute: int | None = None
        self._next_tick: int = 0
        self._stopping = False
        self._history_stop = threading.Event()
        self.history: asyncio.Task[int] | None = None

    # -- MarketFeed -----------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        return [Instrument(venue=self.venue, symbol=s.symbol, base=s.base, quote=s.quote, tick_size=s.tick_size,
                           step_size=s.step_size, min_notional=s.min_notional) for s in self.specs]

    async def events(self) -> AsyncIterator[MarketEvent]:
        if not self.live:
            self.start_live(self.clock.now())
        while not self._stopping:
            for event in self.step(self.clock.now()):
                yield event
            delay = (self._next_tick - to_ms(self.clock.now())) / 1000
            await asyncio.sleep(min(max(delay, 0.001), self.tick_ms / 1000))

    async def stop(self) -> None:
        self._stopping = True
        self._history_stop.set()
        if self.history is not None:  # it stops at the next partition; a daemon thread never holds up exit
            await asyncio.wait([self.history], timeout=5)

    # -- history --------------------------------------------------------------------------

    async def prepare(self, store: CandleStore, *, fence: int | None = None) -> dict[str, list[Bar]]:
        """Back-fill (see ``sim_history``) and get ready to go live; the last day of 1m bars.

        Returns once the live market can start; the bulk of a first back-fill keeps being
        written in a thread (``self.history``).
        """
        # a feed stopped when its owner lost the lease starts again when the lease comes back
        self._stopping = False
        self._history_stop = threading.Event()
        now = self.clock.now()
        plan: HistoryPlan = await asyncio.to_thread(
            plan_history, self.specs, store, seed=self.seed, now_ms=to_ms(now), days=self.backfill_days, fence=fence)
        self.start_live(now, prices=plan.live_price, state=plan.state)
        self.history = asyncio.create_task(self._write_history(plan), name="market-backfill")
        return {s: frame.to_bars(s, "1m") for s, frame in plan.recent.items()}

    async def _write_history(self, plan: HistoryPlan) -> int:
        started = self.clock.monotonic()
        try:
            written = await _in_daemon_thread(plan.write, self._history_stop)
        except Stopped:
            logger.info("market back-fill interrupted (it continues at the next start)")
            return 0
        except Exception:
            logger.exception("market back-fill failed")
            raise
        logger.info("market back-fill written", extra={"bars": written, "venue": self.venue,
                                                        "seconds": round(self.clock.monotonic() - started, 2)})
        return written

    # -- live -----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return bool(self._symbols)

    def start_live(self, now: datetime, *, prices: dict[str, Decimal] | None = None,
                   state: ModelState | None = None) -> None:
        now_ms = to_ms(now)
        self._rng = history_rng(self.seed, now_ms // MINUTE_MS, 99)
        self._state = state if state is not None else self._model.initial_state(self._rng)
        fraction = self.tick_ms / MINUTE_MS
        self._symbols = [_Symbol(spec, (prices or {}).get(spec.symbol, spec.price), fraction, now_ms, self._rng)
                         for spec in self.specs]
        self._minute = None
        self._next_tick = -(-now_ms // self.tick_ms) * self.tick_ms

    def last_prices(self) -> dict[str, Decimal]:
        return {s.spec.symbol: s.book.price(round(math.exp(s.log_mid) / float(s.spec.tick_size)))
                for s in self._symbols}

    def step(self, until: datetime) -> list[MarketEvent]:
        """Advance the market to ``until``: the trades and book updates of every tick since."""
        if not self.live:
            self.start_live(until)
        until_ms = to_ms(until)
        if until_ms - self._next_tick > MAX_CATCH_UP_MS:
            self._skip_to(until_ms)
        events: list[MarketEvent] = []
        while self._next_tick <= until_ms:
            self._tick(self._next_tick, events)
            self._next_tick += self.tick_ms
        return events

    def _new_minute(self, minute: int) -> None:
        assert self._rng is not None and self._state is not None
        returns, sigma, self._state = self._model.simulate(1, self._rng, self._state)
        for i, sym in enumerate(self._symbols):
            sym.log_mid = sym.target  # the previous minute ended exactly on its target
            sym.target = sym.log_mid + float(returns[i, 0])
            sym.sigma = float(sigma[i, 0])
        self._minute = minute

    def _skip_to(self, until_ms: int) -> None:
        """Jump over a long stall: prices move on (no events), the book is rebuilt around them."""
        assert self._rng is not None and self._state is not None
        minute = until_ms // MINUTE_MS * MINUTE_MS
        skipped = (minute - (self._minute if self._minute is not None else minute)) // MINUTE_MS
        if skipped > 1:
            returns, _, self._state = self._model.simulate(skipped - 1, self._rng, self._state)
            for i, sym in enumerate(self._symbols):
                sym.target += float(returns[i].sum())
        for sym in self._symbols:
            sym.log_mid = sym.target
            sym.book._reset(math.exp(sym.log_mid) / float(sym.spec.tick_size))
        self._minute = None
        self._next_tick = minute

    def _tick(self, at_ms: int, events: list[MarketEvent]) -> None:
        assert self._rng is not None
        minute = at_ms // MINUTE_MS * MINUTE_MS
        if minute != self._minute:
            self._new_minute(minute)
        remaining = self.ticks_per_minute - (at_ms - minute) // self.tick_ms  # ticks left, this one included
        ts = from_ms(at_ms)
        rng = self._rng
        for sym in self._symbols:
            if remaining <= 1:
                sym.log_mid = sym.target
            else:
                variance = sym.sigma * sym.sigma / self.ticks_per_minute * (remaining - 1) / remaining
                sym.log_mid += (sym.target - sym.log_mid) / remaining + math.sqrt(variance) * rng.standard_normal()
            book = sym.book
            activity = (sym.sigma / sym.spec.sigma) ** 0.8
            fills = book.move_to(math.exp(sym.log_mid) / float(sym.spec.tick_size))
            fills += book.touch_trades(poisson(book.rng, TOUCH_TRADES_PER_TICK * activity))
            book.churn()
            for side, price, qty in fills:
                sym.trade_id += 1
                events.append(Trade(venue=self.venue, symbol=sym.spec.symbol, id=str(sym.trade_id),
                                    price=book.price(price), quantity=book.quantity(qty), side=side, ts=ts))
            sym.seq += 1
            bids, asks = book.snapshot()
            events.append(OrderBook(venue=self.venue, symbol=sym.spec.symbol, seq=sym.seq, bids=bids, asks=asks,
                                    ts=ts))


async def _in_daemon_thread(func: Callable[[threading.Event], int], stop: threading.Event) -> int:
    """Run ``func(stop)`` in a daemon thread (a process exiting mid-back-fill does not wait for it)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def settle(result: int | None, error: BaseException | None) -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(result or 0)

    def target() -> None:
        try:
            result, error = func(stop), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name="market-backfill", daemon=True).start()
    return await done
