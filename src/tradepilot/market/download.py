"""Downloading historical candles from an exchange through ccxt into the candle store.

``download_candles`` pages through ``fetch_ohlcv`` from ``since`` (or from the last stored
bar, when the store already reaches past ``since``: a rerun resumes instead of starting
over) up to ``until`` (default: now), writes each page as it arrives — an interrupted
download keeps what it fetched — and reports progress after every page. Only closed bars are
stored: a bar still in progress at ``until`` is left for the next run. Temporary exchange
errors are retried with back-off; the others (unknown symbol, timeframe the venue does not
offer) end the download with the translated :mod:`~tradepilot.market.feeds.ccxt_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tradepilot.core.clock import Clock, LiveClock
from tradepilot.market.feeds.ccxt_errors import (
    ExchangeBadRequest,
    ExchangeBadSymbol,
    ExchangeRateLimited,
    ExchangeTemporaryError,
    ccxt_boundary,
)
from tradepilot.market.feeds.ccxt_venues import to_decimal
from tradepilot.market.store import CandleStore
from tradepilot.market.types import TIMEFRAMES, Bar

logger = logging.getLogger("tradepilot.market.download")


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    symbol: str
    timeframe: str
    start: datetime  # where this run began (after resuming)
    until: datetime
    bars: int  # written so far by this run
    pages: int
    last_open_time: datetime | None

    @property
    def fraction(self) -> float:
        """0..1 of the time range covered so far."""
        if self.last_open_time is None:
            return 0.0
        total = (self.until - self.start).total_seconds()
        done = (self.last_open_time - self.start).total_seconds() + TIMEFRAMES[self.timeframe]
        return 1.0 if total <= 0 else max(0.0, min(1.0, done / total))


@dataclass(frozen=True, slots=True)
class DownloadResult:
    venue: str
    symbol: str
    timeframe: str
    start: datetime
    until: datetime
    bars: int
    pages: int
    resumed: bool  # started from the last stored bar rather than ``since``
    first_open_time: datetime | None
    last_open_time: datetime | None


async def download_candles(
    exchange: Any,
    store: CandleStore,
    *,
    symbol: str,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    page_limit: int = 1000,
    resume: bool = True,
    progress: Callable[[DownloadProgress], None] | None = None,
    clock: Clock | None = None,
    max_attempts: int = 5,
    backoff_seconds: float = 1.0,
) -> DownloadResult:
    """Fetch ``symbol``'s ``timeframe`` bars from ``exchange`` (a ccxt async exchange) into ``store``."""
    if timeframe not in TIMEFRAMES:
        raise ExchangeBadRequest(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}",
                                 code="invalid_timeframe")
    clock = clock or LiveClock()
    span = timedelta(seconds=TIMEFRAMES[timeframe])
    until = min(until or clock.now(), clock.now())
    with ccxt_boundary(exchange.id):
        await exchange.load_markets()
    if symbol not in exchange.markets:
        raise ExchangeBadSymbol(f"{exchange.id} does not list {symbol}", venue=exchange.id)
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise ExchangeBadRequest(f"{exchange.id} has no {timeframe} candles", code="invalid_timeframe")

    start = _floor(since, span)
    resumed = False
    if resume:
        last = await asyncio.to_thread(store.last_bar, symbol, timeframe)
        if last is not None and last.open_time >= start:
            start, resumed = last.open_time, True  # refetch it: it may have been stored unfinished
    cursor = start
    written = pages = 0
    first: datetime | None = None
    last_time: datetime | None = None
    while cursor + span <= until:
        rows = await _fetch_page(exchange, symbol, timeframe, cursor, page_limit, max_attempts, backoff_seconds)
        bars = [b for b in (_bar(symbol, timeframe, r) for r in rows) if cursor <= b.open_time and b.open_time + span <= until]
        pages += 1
        if not bars:
            break
        written += await asyncio.to_thread(store.write, symbol, timeframe, bars)
        first = first or bars[0].open_time
        last_time = bars[-1].open_time
        if progress is not None:
            progress(DownloadProgress(symbol, timeframe, start, until, written, pages, last_time))
        cursor = last_time + span
    return DownloadResult(store.venue, symbol, timeframe, start, until, written, pages, resumed, first, last_time)


async def _fetch_page(exchange: Any, symbol: str, timeframe: str, since: datetime, limit: int,
                      max_attempts: int, backoff_seconds: float) -> list[list[Any]]:
    since_ms = int(since.timestamp() * 1000)
    for attempt in range(max_attempts):
        try:
            with ccxt_boundary(exchange.id):
                return list(await exchange.fetch_ohlcv(symbol, timeframe, since_ms, limit))
        except ExchangeTemporaryError as exc:
            if attempt + 1 == max_attempts:
                raise
            delay = backoff_seconds * 2**attempt * random.uniform(0.5, 1.0)
            if isinstance(exc, ExchangeRateLimited) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            logger.warning("%s %s %s: %s; retrying in %.1fs", exchange.id, symbol, timeframe, exc.detail, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _bar(symbol: str, timeframe: str, row: list[Any]) -> Bar:
    ts, o, h, low, c, v = row[:6]
    values = [to_decimal(x) for x in (o, h, low, c, v)]
    if any(x is None for x in values):
        raise ValueError(f"incomplete candle {row}")
    o_, h_, l_, c_, v_ = values
    return Bar(symbol=symbol, timeframe=timeframe, open_time=datetime.fromtimestamp(ts / 1000, tz=timezone.utc),
               open=o_, high=h_, low=l_, close=c_, volume=v_)  # type: ignore[arg-type]


def _floor(moment: datetime, span: timedelta) -> datetime:
    seconds = int(span.total_seconds())
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc)
