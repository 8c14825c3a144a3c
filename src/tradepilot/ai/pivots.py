"""Swing highs and lows, found online: the turning points chart patterns are drawn between.

A zigzag: a swing high is *confirmed* once the low has fallen ``threshold`` below the
running high (and vice versa), so the swings known at bar t are exactly those the full
series gives up to t — nothing a pattern is built from depends on later bars. Prices are
compared in log space and in units of the series' own typical one-bar move, measured over
the bars before each point (1.4826 x the median absolute deviation of log returns), so
one set of thresholds works for BTC at 60,000 and a coin at 0.0004, on any timeframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PivotKind = Literal["high", "low"]
SCALE_WINDOW = 500  # bars of history behind each bar's scale
SCALE_WARMUP = 30  # fewer returns than this: no scale yet (NaN)


@dataclass(frozen=True, slots=True)
class Pivot:
    index: int  # the bar of the extreme
    level: float  # log price
    kind: PivotKind
    confirmed_at: int  # the first bar at which it was known


def trailing_scale(log_close: np.ndarray, window: int = SCALE_WINDOW) -> np.ndarray:
    """scale[t]: the typical one-bar move over the ``window`` returns ending at bar t."""
    moves = np.diff(np.asarray(log_close, dtype=np.float64), prepend=np.nan)
    scale = np.full(moves.size, np.nan)
    if moves.size <= SCALE_WARMUP:
        return scale
    padded = np.concatenate([np.full(window - 1, np.nan), moves])
    views = sliding_window_view(padded, window)  # views[t] = moves[t-window+1 .. t]
    counts = np.sum(np.isfinite(views), axis=1)
    usable = counts >= SCALE_WARMUP
    median = np.nanmedian(views[usable], axis=1, keepdims=True)
    scale[usable] = 1.4826 * np.nanmedian(np.abs(views[usable] - median), axis=1)
    scale[scale <= 0] = np.nan  # a flat market has no scale: nothing stands out of it
    return scale


def zigzag(log_high: np.ndarray, log_low: np.ndarray, threshold: np.ndarray) -> list[Pivot]:
    """Alternating confirmed swings; ``threshold[t]`` (log units) is the reversal that confirms
    a swing at bar t (NaN: not yet measurable, nothing confirmed)."""
    pivots: list[Pivot] = []
    direction = 0  # +1 tracking a high, -1 tracking a low, 0 not started
    hi_i = lo_i = 0
    for t in range(log_high.size):
        if log_high[t] > log_high[hi_i]:
            hi_i = t
        if log_low[t] < log_low[lo_i]:
            lo_i = t
        step = threshold[t]
        if not np.isfinite(step) or step <= 0:
            continue
        if direction >= 0 and log_low[t] <= log_high[hi_i] - step and hi_i < t:
            pivots.append(Pivot(hi_i, float(log_high[hi_i]), "high", t))
            direction, lo_i = -1, _extreme_since(log_low, hi_i + 1, t, lowest=True)
            hi_i = t
        elif direction <= 0 and log_high[t] >= log_low[lo_i] + step and lo_i < t:
            pivots.append(Pivot(lo_i, float(log_low[lo_i]), "low", t))
            direction, hi_i = 1, _extreme_since(log_high, lo_i + 1, t, lowest=False)
            lo_i = t
    return pivots


def _extreme_since(values: np.ndarray, start: int, end: int, *, lowest: bool) -> int:
    """The bar of the lowest (highest) value in start..end: where the next swing is tracked
    from (``start`` is the bar after the swing just confirmed: one bar is never two swings)."""
    part = values[start:end + 1]
    return start + int(np.argmin(part) if lowest else np.argmax(part))
