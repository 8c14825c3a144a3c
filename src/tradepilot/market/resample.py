"""Timeframe arithmetic: period starts, resampling between timeframes, gap detection.

Periods are aligned to the Unix epoch in UTC, so a ``1d`` bar opens at 00:00 UTC and ``4h``
bars at 00:00, 04:00, ... — the convention of the major exchanges.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from tradepilot.market.frame import BarFrame, from_ms, timeframe_ms, to_ms
from tradepilot.market.types import TIMEFRAMES


def floor_ms(ms: int, timeframe: str) -> int:
    span = timeframe_ms(timeframe)
    return (ms // span) * span


def floor_time(moment: datetime, timeframe: str) -> datetime:
    return from_ms(floor_ms(to_ms(moment), timeframe))


def derived_timeframes(source: str) -> list[str]:
    """Timeframes that whole ``source`` bars add up to (``1h`` → ``4h``, ``1d``)."""
    base = TIMEFRAMES[source]
    return [tf for tf, seconds in TIMEFRAMES.items() if seconds > base and seconds % base == 0]


def resample(frame: BarFrame, target: str) -> BarFrame:
    """Aggregate bars into ``target`` periods: first open, max high, min low, last close, sum volume.

    A period is built from whichever source bars exist in it (a period with a gap gives a bar
    from the bars present; a period without any bar gives none).
    """
    if not len(frame):
        return BarFrame.empty(frame.price_scale, frame.volume_scale)
    span = timeframe_ms(target)
    periods = (frame.open_time // span) * span
    starts = np.concatenate(([0], np.flatnonzero(np.diff(periods)) + 1))
    ends = np.concatenate((starts[1:], [len(frame)])) - 1
    return BarFrame(
        open_time=periods[starts],
        open=frame.open[starts],
        high=np.maximum.reduceat(frame.high, starts),
        low=np.minimum.reduceat(frame.low, starts),
        close=frame.close[ends],
        volume=np.add.reduceat(frame.volume, starts),
        price_scale=frame.price_scale,
        volume_scale=frame.volume_scale,
    )


def gaps(open_times: np.ndarray, timeframe: str, *, start_ms: int | None = None,
         end_ms: int | None = None) -> list[tuple[int, int]]:
    """Missing periods as ``[from, to)`` millisecond ranges, within ``[start_ms, end_ms)`` if given.

    Without bounds only holes between the first and the last bar count.
    """
    span = timeframe_ms(timeframe)
    out: list[tuple[int, int]] = []
    times = np.asarray(open_times, dtype=np.int64)
    if start_ms is not None:
        start_ms = -(-start_ms // span) * span  # the first whole period at or after start
    if not times.size:
        if start_ms is not None and end_ms is not None and start_ms < end_ms:
            out.append((start_ms, end_ms))
        return out
    if start_ms is not None and times[0] > start_ms:
        out.append((start_ms, int(times[0])))
    holes = np.flatnonzero(np.diff(times) > span)
    out.extend((int(times[i]) + span, int(times[i + 1])) for i in holes)
    if end_ms is not None and int(times[-1]) + span < end_ms:
        out.append((int(times[-1]) + span, end_ms))
    return out
