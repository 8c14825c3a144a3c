"""Stored bars as the float arrays the models read (Decimal prices end here, at the AI's boundary)."""

from __future__ import annotations

import numpy as np

from tradepilot.ai.features import Candles
from tradepilot.market.types import Bar
from tradepilot.strategies.bars import Bars


def candles_of(bars: list[Bar]) -> Candles:
    columns = [np.array([float(getattr(b, name)) for b in bars]) for name in ("open", "high", "low", "close", "volume")]
    return Candles(np.array([b.open_time.timestamp() for b in bars]), *columns)


def bars_of(symbol: str, bars: list[Bar]) -> Bars:
    """The same bars as the backtester and the strategies read them (open time in ms)."""
    columns = (np.array([float(getattr(b, name)) for b in bars]) for name in ("open", "high", "low", "close", "volume"))
    times = np.array([int(b.open_time.timestamp() * 1000) for b in bars], dtype=np.int64)
    return Bars.from_arrays(symbol, times, *columns)
