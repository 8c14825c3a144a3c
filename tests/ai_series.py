"""Other candle series for the AI tests' "another series, another answer" checks.

``tilted`` bends a real series (the same bars, a steady drift added: the trend, momentum,
levels and returns move, the bar-to-bar noise stays real); ``pattern_bars`` writes the
synthetic series of ``tests/pattern_series.py`` with its injected chart patterns.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

from tests.pattern_series import Injected, series_with_patterns
from tradepilot.market.importer import read_bars
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar


def _price(value: float) -> Decimal:
    return Decimal(f"{value:.10g}")


def tilted(bars: list[Bar], per_bar: float) -> list[Bar]:
    """The bars with every price multiplied by exp(per_bar × i): a log drift of ``per_bar`` a bar."""
    out = []
    for i, bar in enumerate(bars):
        factor = math.exp(per_bar * i)
        out.append(replace(bar, open=_price(float(bar.open) * factor), high=_price(float(bar.high) * factor),
                           low=_price(float(bar.low) * factor), close=_price(float(bar.close) * factor)))
    return out


async def write_tilted(store: CandleStore, path: Path, symbol: str, timeframe: str, per_bar: float) -> list[Bar]:
    """The file's bars, tilted, written under ``symbol`` (over any bars stored at those times)."""
    bars = tilted(read_bars(path, symbol, timeframe), per_bar)
    await asyncio.to_thread(store.write, symbol, timeframe, bars)
    return bars


async def write_pattern_bars(store: CandleStore, symbol: str, n_patterns: int, seed: int,
                             start: datetime = datetime(2024, 1, 1, tzinfo=UTC), after: int = 40) -> list[Injected]:
    """Hourly bars with ``n_patterns`` injected chart patterns, cut ``after`` bars past the last
    one (so it falls inside analyze-market's recent window); returns what was injected."""
    high, low, close, injected = series_with_patterns(n_patterns, seed)
    cut = injected[-1].end + after
    high, low, close = high[:cut], low[:cut], close[:cut]
    opens = np.concatenate([[close[0]], close[:-1]])
    bars = [Bar(symbol=symbol, timeframe="1h", open_time=start + timedelta(hours=i), open=_price(o),
                high=_price(max(h, o)), low=_price(min(lo, o)), close=_price(c), volume=Decimal(1))
            for i, (o, h, lo, c) in enumerate(zip(opens, high, low, close))]
    await asyncio.to_thread(store.write, symbol, "1h", bars)
    return injected
