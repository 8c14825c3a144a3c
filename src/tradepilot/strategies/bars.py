"""``Bars``: one symbol's OHLCV as float64 arrays, what strategies and the backtester read.

The candle store keeps exact decimals (``market.frame.BarFrame``); strategies and backtests
work in floats (DESIGN §1.3), so the conversion happens once, here, at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradepilot.market.frame import BarFrame

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars of one symbol, oldest first; ``time`` is each bar's open time in ms (UTC)."""

    symbol: str
    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.time)
        for name in FIELDS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"bars of {self.symbol}: column {name} has {len(getattr(self, name))} values, "
                                 f"time has {n}")

    def __len__(self) -> int:
        return len(self.time)

    def field(self, name: str) -> np.ndarray:
        if name not in FIELDS:
            raise ValueError(f"unknown price field {name!r}; one of {', '.join(FIELDS)}")
        return getattr(self, name)  # type: ignore[no-any-return]

    def take(self, index: slice | np.ndarray) -> Bars:
        return Bars(self.symbol, self.time[index], *(getattr(self, f)[index] for f in FIELDS))

    @classmethod
    def from_arrays(cls, symbol: str, time: np.ndarray, open: np.ndarray, high: np.ndarray, low: np.ndarray,
                    close: np.ndarray, volume: np.ndarray | None = None) -> Bars:
        as_float = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        vol = np.zeros(len(close)) if volume is None else volume
        return cls(symbol, np.asarray(time, dtype=np.int64), as_float(open), as_float(high), as_float(low),
                   as_float(close), as_float(vol))

    @classmethod
    def from_frame(cls, symbol: str, frame: BarFrame) -> Bars:
        """Floats from the store's exact columns (the one Decimal → float conversion)."""
        return cls(symbol, frame.open_time.astype(np.int64), *(frame.as_float(f) for f in FIELDS))


def align(bars: list[Bars]) -> list[Bars]:
    """The bars of several symbols on their common timestamps (a timestamp missing from any
    symbol is dropped for all), so one index means one moment across the portfolio."""
    if len(bars) <= 1:
        return list(bars)
    common = bars[0].time
    for other in bars[1:]:
        common = np.intersect1d(common, other.time, assume_unique=True)
    return [b if len(b) == len(common) else b.take(np.isin(b.time, common)) for b in bars]
