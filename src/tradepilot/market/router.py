"""/api/market: instruments, prices, order books, trades, candles and market analytics.

Every route needs an authenticated user (a bearer token or an API key): market data is not
secret, but the API serves users, and one rule for the whole prefix is easier to reason
about than a public subset. Symbols in a path may be URL-encoded (``BTC%2FUSDT``) or in dash
form (``BTC-USDT``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query

from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import get_current_user
from tradepilot.market import analytics
from tradepilot.market.deps import KnownInstrument, Market, QueryInstrument, Range, as_utc
from tradepilot.market.frame import BarFrame, from_ms, timeframe_ms, to_ms
from tradepilot.market.payloads import parse_time, rfc3339
from tradepilot.market.resample import floor_time
from tradepilot.market.schemas import (
    AtrOut,
    CandleOut,
    CandlePage,
    CorrelationsOut,
    Estimate,
    GapList,
    GapOut,
    InstrumentList,
    InstrumentOut,
    OrderBookOut,
    PriceHistory,
    PriceList,
    PriceOut,
    PricePoint,
    Timeframe,
    TradeList,
    TradeOut,
    VolatilityOut,
    VolumeOut,
    VolumePeriod,
)
from tradepilot.market.service import MarketService
from tradepilot.market.types import Bar, Instrument

router = api_router(prefix="/api/market", tags=["market"], dependencies=[Depends(get_current_user)])

Limit = Annotated[int, Query(ge=1, le=5000)]


def _instrument_out(i: Instrument) -> InstrumentOut:
    return InstrumentOut(venue=i.venue, symbol=i.symbol, base=i.base, quote=i.quote, tick_size=i.tick_size,
                         step_size=i.step_size, min_notional=i.min_notional, status=i.status)


@router.get("/instruments", response_model=InstrumentList)
async def list_instruments(market: Market) -> InstrumentList:
    """The venue's instruments: tick size, step size, minimum notional, status."""
    return InstrumentList(items=[_instrument_out(i) for i in market.instruments()])


@router.get("/instruments/{symbol:path}", response_model=InstrumentOut)
async def get_instrument(instrument: KnownInstrument) -> InstrumentOut:
    return _instrument_out(instrument)


@router.get("/prices", response_model=PriceList)
async def prices(market: Market, symbols: Annotated[str | None, Query(
        description="comma-separated, e.g. BTC/USDT,ETH-USDT; all when omitted")] = None) -> PriceList:
    """Last price, best bid/ask and 24-hour figures (null until the first tick arrives)."""
    chosen = ([market.instrument(s) for s in symbols.split(",") if s.strip()] if symbols
              else market.instruments())
    items = []
    for inst in chosen:
        t = market.ticker(inst.symbol)
        items.append(PriceOut(
            symbol=inst.symbol, price=market.last_price(inst.symbol), bid=t and t.bid, ask=t and t.ask,
            open_24h=t and t.open_24h, high_24h=t and t.high_24h, low_24h=t and t.low_24h,
            volume_24h=t and t.volume_24h, change_24h_pct=t and t.change_24h_pct, ts=t and t.ts))
    return PriceList(items=items)


async def _candles(market: MarketService, symbol: str, timeframe: str, start: datetime | None,
                   end: datetime | None, limit: int) -> tuple[list[Bar], str | None]:
    bars = await market.read_candles(symbol, timeframe, start, end, limit)
    cursor = None
    if start is not None and len(bars) == limit:
        cursor = rfc3339(from_ms(to_ms(bars[-1].open_time) + timeframe_ms(timeframe)))
    return bars, cursor


def _cursor_start(rng_start: datetime | None, cursor: str | None) -> datetime | None:
    if cursor is None:
        return rng_start
    try:
        return parse_time(cursor)
    except ValueError:
        raise Unprocessable("cursor is not a time from next_cursor.", code="invalid_cursor") from None


@router.get("/prices/history", response_model=PriceHistory)
async def price_history(market: Market, instrument: QueryInstrument, window: Range, timeframe: Timeframe = "1h",
                        limit: Limit = 500, cursor: str | None = None) -> PriceHistory:
    """Closing prices per period (the candles' closes)."""
    start = _cursor_start(window.start, cursor)
    bars, next_cursor = await _candles(market, instrument.symbol, timeframe, start, window.end, limit)
    return PriceHistory(symbol=instrument.symbol, timeframe=timeframe, next_cursor=next_cursor,
                        items=[PricePoint(time=b.open_time, price=b.close) for b in bars])


@router.get("/orderbook/{symbol:path}", response_model=OrderBookOut)
async def order_book(market: Market, instrument: KnownInstrument,
                     depth: Annotated[int, Query(ge=1, le=50)] = 20) -> OrderBookOut:
    book = market.order_book(instrument.symbol, depth)
    if book is None:
        raise ServiceUnavailable("No order book yet for this symbol; retry shortly.", code="market_data_unavailable",
                                 headers={"Retry-After": "1"})
    return OrderBookOut(venue=book.venue, symbol=book.symbol, seq=book.seq, ts=book.ts,
                        bids=[(p, q) for p, q in book.bids], asks=[(p, q) for p, q in book.asks])


@router.get("/trades/{symbol:path}", response_model=TradeList)
async def recent_trades(market: Market, instrument: KnownInstrument,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TradeList:
    """The latest trades, newest first."""
    trades = market.recent_trades(instrument.symbol, limit)
    return TradeList(symbol=instrument.symbol, items=[
        TradeOut(id=t.id, price=t.price, quantity=t.quantity, side=t.side, ts=t.ts) for t in trades])


@router.get("/candles/{symbol:path}", response_model=CandlePage)
async def candles(market: Market, instrument: KnownInstrument, window: Range, timeframe: Timeframe = "1m",
                  limit: Limit = 500, cursor: str | None = None) -> CandlePage:
    """OHLCV bars with ``start <= open_time < end``: the first ``limit`` from ``start``, or the
    latest ``limit`` when no start is given. ``next_cursor`` continues a ranged read."""
    start = _cursor_start(window.start, cursor)
    bars, next_cursor = await _candles(market, instrument.symbol, timeframe, start, window.end, limit)
    return CandlePage(symbol=instrument.symbol, timeframe=timeframe, next_cursor=next_cursor, items=[
        CandleOut(open_time=b.open_time, open=b.open, high=b.high, low=b.low, close=b.close, volume=b.volume,
                  closed=b.closed) for b in bars])


@router.get("/gaps/{symbol:path}", response_model=GapList)
async def candle_gaps(market: Market, instrument: KnownInstrument, window: Range,
                      timeframe: Timeframe = "1m") -> GapList:
    """Missing bars in the store (within ``start``..``end`` when given)."""
    found = await asyncio.to_thread(market.candles.gaps, instrument.symbol, timeframe, window.start, window.end)
    span = timeframe_ms(timeframe)
    return GapList(symbol=instrument.symbol, timeframe=timeframe, items=[
        GapOut(start=a, end=b, missing_bars=(to_ms(b) - to_ms(a) + span - 1) // span) for a, b in found])


async def _closed_window(market: MarketService, symbol: str, timeframe: str, bars: int,
                         end: datetime | None) -> BarFrame:
    """The last ``bars`` closed bars before ``end`` (default: now)."""
    until = floor_time(end or market.runtime.clock.now(), timeframe)
    found = await market.read_candles(symbol, timeframe, None, until, bars)
    return BarFrame.from_bars(b for b in found if b.closed)


def _insufficient(exc: analytics.InsufficientData) -> Unprocessable:
    return Unprocessable(f"Not enough candles: {exc}.", code="insufficient_data")


@router.get("/volume", response_model=VolumeOut)
async def volume(market: Market, instrument: QueryInstrument, timeframe: Timeframe = "1h",
                 window: Annotated[int, Query(ge=1, le=5000)] = 24,
                 end: Annotated[datetime | None, Query(description="exclusive; default now")] = None) -> VolumeOut:
    """Volume per period, VWAP over the window and the last period's volume relative to the others."""
    frame = await _closed_window(market, instrument.symbol, timeframe, window, as_utc(end))
    try:
        figures = await asyncio.to_thread(analytics.volume, frame)
    except analytics.InsufficientData as exc:
        raise _insufficient(exc) from None
    bars = frame.to_bars(instrument.symbol, timeframe)
    return VolumeOut(symbol=instrument.symbol, timeframe=timeframe, window=window, periods=[
        VolumePeriod(open_time=b.open_time, volume=v, quote_volume=q)
        for b, v, q in zip(bars, figures.volumes, figures.quote_volumes, strict=True)],
        total_volume=figures.total_volume, total_quote_volume=figures.total_quote_volume, vwap=figures.vwap,
        average_volume=figures.average_volume, relative_volume=figures.relative_volume)


@router.get("/volatility", response_model=VolatilityOut)
async def volatility(market: Market, instrument: QueryInstrument, timeframe: Timeframe = "1h",
                     window: Annotated[int, Query(ge=2, le=5000, description="returns in the window")] = 30,
                     atr_period: Annotated[int, Query(ge=1, le=500)] = 14,
                     end: Annotated[datetime | None, Query(description="exclusive; default now")] = None,
                     ) -> VolatilityOut:
    """Close-to-close, Parkinson and Garman-Klass volatility and Wilder's ATR, per period and annualised."""
    if atr_period > window:
        raise Unprocessable("atr_period must not exceed window.", code="invalid_window")
    frame = await _closed_window(market, instrument.symbol, timeframe, window + 1, as_utc(end))
    try:
        v = await asyncio.to_thread(analytics.volatility, frame, timeframe, atr_period=atr_period)
    except analytics.InsufficientData as exc:
        raise _insufficient(exc) from None
    last_close = float(frame.as_float("close")[-1])
    bars = frame.to_bars(instrument.symbol, timeframe)
    est = lambda x: Estimate(per_period=x, annualised=x * v.annualisation)  # noqa: E731
    return VolatilityOut(
        symbol=instrument.symbol, timeframe=timeframe, window=window, observations=v.observations,
        start=bars[0].open_time, end=bars[-1].open_time, periods_per_year=analytics.bars_per_year(timeframe),
        close_to_close=est(v.close_to_close), parkinson=est(v.parkinson), garman_klass=est(v.garman_klass),
        atr=AtrOut(period=v.atr_period, value=v.atr, percent_of_price=100 * v.atr / last_close))


@router.get("/correlations", response_model=CorrelationsOut)
async def correlations(market: Market, symbols: Annotated[str | None, Query(
        description="comma-separated; all instruments when omitted")] = None, timeframe: Timeframe = "1h",
        window: Annotated[int, Query(ge=3, le=5000, description="returns per symbol")] = 100,
        end: Annotated[datetime | None, Query(description="exclusive; default now")] = None) -> CorrelationsOut:
    """Pearson correlations of log returns over the periods every symbol has."""
    chosen = ([market.instrument(s).symbol for s in symbols.split(",") if s.strip()] if symbols
              else [i.symbol for i in market.instruments()])
    chosen = list(dict.fromkeys(chosen))
    until = as_utc(end)
    frames = await asyncio.gather(*(_closed_window(market, s, timeframe, window + 1, until) for s in chosen))
    returns = {s: analytics.log_returns_by_time(f, timeframe) for s, f in zip(chosen, frames, strict=True)}
    try:
        common, matrix = analytics.correlation_matrix(returns)
    except analytics.InsufficientData as exc:
        raise _insufficient(exc) from None
    return CorrelationsOut(timeframe=timeframe, window=window, observations=len(common),
                           start=from_ms(common[0]), end=from_ms(common[-1]), symbols=chosen,
                           matrix=[[None if x != x else round(float(x), 12) for x in row] for row in matrix])
