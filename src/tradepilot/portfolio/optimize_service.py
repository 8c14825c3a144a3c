"""Optimising an allocation from stored daily candles (``POST /api/portfolio/optimize``).

Reads each symbol's closed ``1d`` bars from the market service's candle store over the
lookback window (up to the last full UTC day), aligns them on the days every symbol has,
and runs ``optimize.optimize`` in a worker thread (it is CPU work; the event loop stays free).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

import numpy as np

from tradepilot.core.clock import Clock
from tradepilot.market.service import normalize_symbol
from tradepilot.portfolio.errors import InsufficientHistory, MissingPrices
from tradepilot.portfolio.optimize import MIN_OBSERVATIONS, Method, OptimizationResult, optimize

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService

TIMEFRAME = "1d"
WEIGHT_PLACES = 8


@dataclass(frozen=True, slots=True)
class AlignedCloses:
    symbols: list[str]
    days: list[datetime]
    closes: np.ndarray  # (days, symbols)


@dataclass(frozen=True, slots=True)
class OptimizedAllocation:
    result: OptimizationResult
    closes: AlignedCloses
    bounds: dict[str, tuple[float, float]]
    target_allocation: dict[str, Decimal] | None


async def load_closes(market: MarketService, clock: Clock, symbols: list[str], lookback_days: int) -> AlignedCloses:
    """Closed daily closes of ``symbols`` over the window, on the days all of them have."""
    end = datetime.combine(clock.now().astimezone(UTC).date(), time(0), tzinfo=UTC)  # today's bar is still open
    start = end - timedelta(days=lookback_days)
    series: dict[str, dict[datetime, Decimal]] = {}
    for symbol in symbols:
        bars = await market.read_candles(symbol, TIMEFRAME, start, end)
        series[symbol] = {b.open_time: b.close for b in bars if b.closed}
    empty = [s for s, closes in series.items() if not closes]
    if empty:
        raise MissingPrices(f"No stored daily closes for {', '.join(empty)} in the last {lookback_days} days.",
                            symbols=empty)
    days = sorted(set.intersection(*(set(closes) for closes in series.values())))
    if len(days) < MIN_OBSERVATIONS + 1:
        raise InsufficientHistory(required=max(MIN_OBSERVATIONS, len(symbols) + 1), available=max(len(days) - 1, 0),
                                  symbols=symbols)
    matrix = np.array([[float(series[s][d]) for s in symbols] for d in days], dtype=float)
    return AlignedCloses(symbols=symbols, days=days, closes=matrix)


async def optimize_allocation(market: MarketService, clock: Clock, *, symbols: list[str], method: Method,
                              lookback_days: int, bounds: dict[str, tuple[float, float]] | None,
                              default_bounds: tuple[float, float], target_return: float | None,
                              risk_free_rate: float) -> OptimizedAllocation:
    names = [market.instrument(normalize_symbol(s)).symbol for s in symbols]  # 404 unknown_symbol
    if len(set(names)) != len(names):
        raise MissingPrices("Each symbol may be given once.", symbols=sorted({n for n in names if names.count(n) > 1}))
    per_symbol = {market.instrument(normalize_symbol(s)).symbol: b for s, b in (bounds or {}).items()}
    closes = await load_closes(market, clock, names, lookback_days)
    result = await asyncio.to_thread(optimize, closes.closes, names, method, bounds=per_symbol,
                                     default_bounds=default_bounds, target_return=target_return,
                                     risk_free_rate=risk_free_rate)
    used = {s: per_symbol.get(s, default_bounds) for s in names}
    return OptimizedAllocation(result, closes, used, _target_allocation(market, result))


def _target_allocation(market: MarketService, result: OptimizationResult) -> dict[str, Decimal] | None:
    """The weights by base asset, rounded to 8 places by largest remainder so they sum to exactly
    1: ready to pass to ``POST /api/portfolio/rebalance``."""
    instruments = [market.instrument(s) for s in result.symbols]
    if len({i.quote for i in instruments}) != 1:
        return None
    unit = Decimal(1).scaleb(-WEIGHT_PLACES)
    exact = [Decimal(repr(max(result.weights[i.symbol], 0.0))) for i in instruments]
    floors = [w.quantize(unit, rounding=ROUND_FLOOR) for w in exact]
    missing = int((Decimal(1) - sum(floors, Decimal(0))) / unit)
    by_remainder = sorted(range(len(exact)), key=lambda k: exact[k] - floors[k], reverse=True)
    for k in by_remainder[:max(missing, 0)]:
        floors[k] += unit
    return {i.base: w for i, w in zip(instruments, floors, strict=True)}
