"""Columnar OHLCV bars as exact scaled integers (``BarFrame``), and their Arrow form.

A price column holds ``int64`` *unscaled* values: the price is ``value × 10^-price_scale``,
exactly as in a ``DECIMAL(18, price_scale)`` Parquet column, whose storage is that very
integer. So the candle store reads and writes decimals without ever building a Python
``Decimal`` per value, resamples with numpy reductions, and still returns every digit it was
given. Floats are produced only on request (``as_float``), for analytics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pyarrow as pa

from tradepilot.market.types import TIMEFRAMES, Bar

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
MAX_SCALE = 18
_DECIMAL18_LIMIT = 10**18  # DECIMAL(18, s) holds |unscaled| < 10^18 (an INT64 in Parquet)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIME_TYPE = pa.timestamp("ms", tz="UTC")


class BarDataError(ValueError):
    """Bars that cannot be stored exactly or are inconsistent (high below close, ...)."""


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def timeframe_ms(timeframe: str) -> int:
    try:
        return TIMEFRAMES[timeframe] * 1000
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; one of {', '.join(TIMEFRAMES)}") from None


def decimal_scale(value: Decimal) -> int:
    """Digits after the point that ``value`` really needs (``1.50`` → 1, ``100`` → 0)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _unscale(value: Decimal, scale: int) -> int:
    scaled = value.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise BarDataError(f"{value} has more than {scale} decimal places")
    return int(scaled)


def _rescale(values: np.ndarray, from_scale: int, to_scale: int) -> np.ndarray:
    if to_scale == from_scale:
        return values
    if to_scale < from_scale:
        raise BarDataError("cannot lower a scale without rounding")
    factor = 10 ** (to_scale - from_scale)
    if values.size and int(np.abs(values).max()) > (2**63 - 1) // factor:
        raise BarDataError(f"values do not fit 64 bits with {to_scale} decimal places")
    return values * factor


@dataclass(frozen=True, slots=True)
class BarFrame:
    """Bars sorted by ``open_time`` (ms since the epoch, UTC), unique, with exact values."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    price_scale: int
    volume_scale: int

    def __len__(self) -> int:
        return int(self.open_time.size)

    @classmethod
    def empty(cls, price_scale: int = 0, volume_scale: int = 0) -> BarFrame:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, z, price_scale, volume_scale)

    @classmethod
    def from_bars(cls, bars: Iterable[Bar]) -> BarFrame:
        """Exact conversion; bars are sorted, and a later bar with the same time wins."""
        unique = {to_ms(bar.open_time): bar for bar in bars}
        if not unique:
            return cls.empty()
        times = sorted(unique)
        rows = [unique[t] for t in times]
        ps = max(decimal_scale(getattr(b, c)) for b in rows for c in PRICE_COLUMNS)
        vs = max(decimal_scale(b.volume) for b in rows)
        if ps > MAX_SCALE or vs > MAX_SCALE:
            raise BarDataError(f"more than {MAX_SCALE} decimal places")
        cols = {c: np.array([_unscale(getattr(b, c), ps) for b in rows], dtype=np.int64) for c in PRICE_COLUMNS}
        volume = np.array([_unscale(b.volume, vs) for b in rows], dtype=np.int64)
        return cls(np.array(times, dtype=np.int64), cols["open"], cols["high"], cols["low"], cols["close"],
                   volume, ps, vs)

    @classmethod
    def from_columns(cls, open_time: Sequence[int] | np.ndarray, *, open: np.ndarray, high: np.ndarray,
                     low: np.ndarray, close: np.ndarray, volume: np.ndarray, price_scale: int,
                     volume_scale: int) -> BarFrame:
        as64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
        return cls(as64(open_time), as64(open), as64(high), as64(low), as64(close), as64(volume),
                   price_scale, volume_scale)

    def column(self, name: str) -> np.ndarray:
        return getattr(self, name)  # type: ignore[no-any-return]

    def as_float(self, name: str) -> np.ndarray:
        """A column as float64 (analytics only: floats are not money)."""
        scale = self.volume_scale if name == "volume" else self.price_scale
        return self.column(name).astype(np.float64) / (10.0**scale)

    def decimal(self, name: str, index: int) -> Decimal:
        scale = self.volume_scale if name == "volume" else self.price_scale
        return Decimal(int(self.column(name)[index])).scaleb(-scale)

    def to_bars(self, symbol: str, timeframe: str, *, now_ms: int | None = None) -> list[Bar]:
        """Decimal bars; with ``now_ms``, a bar whose period has not ended is ``closed=False``."""
        span = timeframe_ms(timeframe)
        out = []
        ps, vs = -self.price_scale, -self.volume_scale
        for i in range(len(self)):
            t = int(self.open_time[i])
            out.append(Bar(symbol=symbol, timeframe=timeframe, open_time=from_ms(t),
                           open=Decimal(int(self.open[i])).scaleb(ps), high=Decimal(int(self.high[i])).scaleb(ps),
                           low=Decimal(int(self.low[i])).scaleb(ps), close=Decimal(int(self.close[i])).scaleb(ps),
                           volume=Decimal(int(self.volume[i])).scaleb(vs),
                           closed=now_ms is None or t + span <= now_ms))
        return out

    def take(self, index: slice | np.ndarray) -> BarFrame:
        return BarFrame(self.open_time[index], self.open[index], self.high[index], self.low[index],
                        self.close[index], self.volume[index], self.price_scale, self.volume_scale)

    def between(self, start_ms: int | None, end_ms: int | None) -> BarFrame:
        """Bars with ``start_ms <= open_time < end_ms`` (either bound may be open)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.open_time, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.open_time, end_ms, side="left"))
        if lo == 0 and hi == len(self):
            return self
        return self.take(slice(lo, max(lo, hi)))

    def with_scales(self, price_scale: int, volume_scale: int) -> BarFrame:
        if price_scale == self.price_scale and volume_scale == self.volume_scale:
            return self
        p = {c: _rescale(self.column(c), self.price_scale, price_scale) for c in PRICE_COLUMNS}
        return BarFrame(self.open_time, p["open"], p["high"], p["low"], p["close"],
                        _rescale(self.volume, self.volume_scale, volume_scale), price_scale, volume_scale)

    @staticmethod
    def concat(frames: Sequence[BarFrame]) -> BarFrame:
        """Frames in time order (non-overlapping) joined, at the largest scales among them."""
        frames = [f for f in frames if len(f)]
        if not frames:
            return BarFrame.empty()
        if len(frames) == 1:
            return frames[0]
        ps = max(f.price_scale for f in frames)
        vs = max(f.volume_scale for f in frames)
        frames = [f.with_scales(ps, vs) for f in frames]
        cols = {c: np.concatenate([f.column(c) for f in frames]) for c in ("open_time", *VALUE_COLUMNS)}
        return BarFrame(price_scale=ps, volume_scale=vs, **cols)

    def upsert(self, other: BarFrame) -> BarFrame:
        """This frame with ``other``'s bars added; where both have a time, ``other`` wins."""
        if not len(other):
            return self
        if not len(self):
            return other
        ps = max(self.price_scale, other.price_scale)
        vs = max(self.volume_scale, other.volume_scale)
        mine, theirs = self.with_scales(ps, vs), other.with_scales(ps, vs)
        keep = ~np.isin(mine.open_time, theirs.open_time, assume_unique=True)
        times = np.concatenate([mine.open_time[keep], theirs.open_time])
        order = np.argsort(times, kind="stable")
        cols = {c: np.concatenate([mine.column(c)[keep], theirs.column(c)])[order] for c in VALUE_COLUMNS}
        return BarFrame(times[order], price_scale=ps, volume_scale=vs, **cols)

    def validate(self) -> None:
        """Refuse what no market produces: unordered times, high < close, negative volume..."""
        if not len(self):
            return
        if np.any(np.diff(self.open_time) <= 0):
            raise BarDataError("bar times must be strictly increasing")
        if np.any(self.high < np.maximum(self.open, self.close)):
            raise BarDataError("high is below open or close")
        if np.any(self.low > np.minimum(self.open, self.close)):
            raise BarDataError("low is above open or close")
        if np.any(self.low <= 0):
            raise BarDataError("prices must be positive")
        if np.any(self.volume < 0):
            raise BarDataError("volume must not be negative")

    # -- Arrow ------------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """``open_time`` timestamp[ms, UTC]; values ``decimal128(18, scale)`` when they fit."""
        arrays = {"open_time": pa.array(self.open_time, type=pa.int64()).view(TIME_TYPE)}
        for name in VALUE_COLUMNS:
            scale = self.volume_scale if name == "volume" else self.price_scale
            arrays[name] = _decimal_array(self.column(name), scale)
        return pa.table(arrays)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> BarFrame:
        times = table.column("open_time")
        if times.null_count:
            raise BarDataError("null open_time")
        open_time = _int64_of(times)
        cols, scales = {}, {}
        for name in VALUE_COLUMNS:
            cols[name], scales[name] = _unscaled_of(table.column(name))
        ps = max(scales[c] for c in PRICE_COLUMNS)
        for c in PRICE_COLUMNS:
            cols[c] = _rescale(cols[c], scales[c], ps)
        return cls(open_time, price_scale=ps, volume_scale=scales["volume"], **cols)


def _int64_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [np.asarray(c.view(pa.int64()) if pa.types.is_timestamp(c.type) else c.cast(pa.int64()))
             for c in chunks]
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype=np.int64)


def _decimal_array(unscaled: np.ndarray, scale: int) -> pa.Array:
    """A decimal128 array whose 16-byte values are ``unscaled`` sign-extended (no copies per value)."""
    n = unscaled.size
    words = np.empty(2 * n, dtype=np.int64)
    words[0::2] = unscaled
    words[1::2] = unscaled >> 63
    fits = not n or int(np.abs(unscaled).max()) < _DECIMAL18_LIMIT
    return pa.Array.from_buffers(pa.decimal128(18 if fits else 38, scale), n, [None, pa.py_buffer(words)])


def _unscaled_of(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """The int64 unscaled values of a decimal column (and its scale)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    dtype = column.type
    if not pa.types.is_decimal128(dtype):
        raise BarDataError(f"expected a decimal128 column, got {dtype}")
    parts = []
    for chunk in chunks:
        if chunk.null_count:
            raise BarDataError("null values in bars")
        words = np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=2 * (chunk.offset + len(chunk)))
        low, high = words[2 * chunk.offset::2], words[2 * chunk.offset + 1::2]
        if np.any(high != (low >> 63)):
            raise BarDataError("decimal value does not fit 64 bits")
        parts.append(low)
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return np.ascontiguousarray(values, dtype=np.int64), int(dtype.scale)
