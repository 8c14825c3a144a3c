"""The replay venue: recorded candles, trades and depth captures played back as a live feed.

``ReplayFeed`` merges its sources (:mod:`.sources`) on one timeline and plays it at
``speed`` × real time (``1.0`` = as recorded, ``10`` = ten times faster, ``0`` = as fast as
the consumer reads). Pacing asks the injected :class:`~tradepilot.core.clock.Clock`, so a
test clock and a test ``sleep`` make it deterministic.

Event times are the recorded ones unless ``rebase_time`` is set, in which case each pass is
shifted so that its first event happens "now" (useful when the replay venue stands in for a
live one). With ``loop=True`` the recording starts over when it ends; times keep moving
forward, trade ids get a ``~<pass>`` suffix and book ``seq`` keeps increasing.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tradepilot.config import Settings
from tradepilot.core.clock import Clock, LiveClock
from tradepilot.market.feeds.sources import NS, ReplaySource, SourceKind, Timed, discover
from tradepilot.market.types import Instrument, MarketEvent, OrderBook, Trade

logger = logging.getLogger("tradepilot.market.replay")

Sleep = Callable[[float], Awaitable[None]]
YIELD_EVERY = 256  # at speed 0, give the event loop a turn this often


@dataclass(frozen=True)
class ReplayConfig:
    """The replay venue as the server runs it (``TRADEPILOT_MARKET_REPLAY_*``)."""

    paths: tuple[str, ...] = ()  # files or globs: …/btcusdt_*.gz, …/BTC_USD-1h.csv
    venue: str = "replay"
    speed: float = 1.0
    depth: int = 20
    loop: bool = True  # a server's venue should not go quiet when the recording ends
    rebase_time: bool = True  # events carry today's times, as a live venue's would

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ReplayConfig:
        """``market_replay_<field>`` settings win over the defaults; ``overrides`` over both."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = getattr(settings, f"market_replay_{name}", None)
            if value is not None:
                values[name] = tuple(value) if name == "paths" else value
        return _replace(cls(**values), **overrides)


class ReplayFeed:
    """A :class:`~tradepilot.market.types.MarketFeed` over recorded data."""

    def __init__(
        self,
        sources: Sequence[ReplaySource],
        *,
        venue: str = "replay",
        speed: float = 1.0,
        depth: int = 20,
        loop: bool = False,
        rebase_time: bool = False,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        instruments: Iterable[Instrument] | None = None,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0 (0 plays as fast as possible)")
        if not sources:
            raise ValueError("a replay needs at least one source")
        self.venue = venue
        self.sources = tuple(sources)
        self.speed = speed
        self.depth = depth
        self.loop = loop
        self.rebase_time = rebase_time
        self._clock = clock or LiveClock()
        self._sleep = sleep
        self._given_instruments = list(instruments) if instruments is not None else None
        self._stopped = asyncio.Event()
        self._last_seq: dict[str, int] = {}  # per symbol, the last book seq played
        self._seq_offsets: dict[str, int] = {}  # added to a looped pass's update ids
        self._last_ts: datetime | None = None  # the last event time played (rebased passes start after it)
        self.events_played = 0
        self.passes = 0

    @classmethod
    def from_config(cls, config: ReplayConfig, *, clock: Clock | None = None) -> ReplayFeed:
        if not config.paths:
            raise ValueError("the replay venue needs recordings: set TRADEPILOT_MARKET_REPLAY_PATHS "
                             "(comma-separated files or globs)")
        return cls.from_paths(config.paths, venue=config.venue, speed=config.speed, depth=config.depth,
                              loop=config.loop, rebase_time=config.rebase_time, clock=clock)

    @classmethod
    def from_paths(cls, entries: Iterable[str | Path], *, kind: SourceKind | None = None,
                   symbol: str | None = None, **options: object) -> ReplayFeed:
        """Sources from paths or globs (``…/btcusdt_*.gz``); see :func:`.sources.discover`."""
        sources = [s for entry in entries for s in discover(entry, kind=kind, symbol=symbol)]
        return cls(sources, **options)  # type: ignore[arg-type]

    async def instruments(self) -> list[Instrument]:
        """Given ones, else inferred from the recordings (finest price and quantity seen), once."""
        if self._given_instruments is None:
            found: dict[str, Instrument] = {}
            for source in self.sources:
                if source.symbol not in found:
                    found[source.symbol] = await asyncio.to_thread(source.instrument, self.venue)
            self._given_instruments = list(found.values())
        return list(self._given_instruments)

    async def stop(self) -> None:
        self._stopped.set()

    async def events(self) -> AsyncIterator[MarketEvent]:  # type: ignore[override]
        """The recording, until it ends (without ``loop``) or :meth:`stop`. A stopped feed can be
        iterated again: it starts over, with times and ``seq`` still moving forward."""
        if self._stopped.is_set():
            self._stopped = asyncio.Event()
            self.passes += 1
        while not self._stopped.is_set():
            async for event in self._play_once():
                yield event
            self.passes += 1
            if not self.loop:
                return

    async def _play_once(self) -> AsyncIterator[MarketEvent]:
        timeline: Iterator[Timed] = heapq.merge(*(s.timeline(self.venue, depth=self.depth) for s in self.sources),
                                                key=lambda item: item[0])
        first_key: int | None = None
        start = 0.0
        shift = timedelta(0)
        for key, event in timeline:
            if self._stopped.is_set():
                return
            if first_key is None:
                first_key, start = key, self._clock.monotonic()
                shift = self._shift_for(event)
            if self.speed > 0:
                delay = start + (key - first_key) / NS / self.speed - self._clock.monotonic()
                if delay > 0:
                    await self._pause(delay)
                    if self._stopped.is_set():
                        return
            elif self.events_played % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self.events_played += 1
            event = self._adjust(event, shift)
            self._last_ts = event.ts if self._last_ts is None else max(self._last_ts, event.ts)
            yield event

    def _shift_for(self, first_event: MarketEvent) -> timedelta:
        """Rebased: the pass starts now; looped: right after the previous pass (whichever is later)."""
        start = self._clock.now() if self.rebase_time else first_event.ts
        if self._last_ts is not None:
            start = max(start, self._last_ts + timedelta(milliseconds=1))
        return start - first_event.ts

    def _adjust(self, event: MarketEvent, shift: timedelta) -> MarketEvent:
        if isinstance(event, OrderBook):
            last = self._last_seq.get(event.symbol)
            offset = self._seq_offsets.get(event.symbol, 0)
            if last is not None and event.seq + offset <= last:  # a new pass: keep seq increasing
                offset = self._seq_offsets[event.symbol] = last - event.seq + 1
            seq = event.seq + offset
            self._last_seq[event.symbol] = seq
            if shift or offset:
                return _replace(event, seq=seq, ts=event.ts + shift)
            return event
        if self.passes and isinstance(event, Trade):
            return _replace(event, id=f"{event.id}~{self.passes}", ts=event.ts + shift)
        return _replace(event, ts=event.ts + shift) if shift else event

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)
        except TimeoutError:
            pass
