"""Candlestick patterns from TA-Lib's 61 ``CDL*`` recognisers (nothing hand-rolled)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import talib

RECOGNISERS: dict[str, str] = {
    name[3:].lower(): name for name in talib.get_function_groups()["Pattern Recognition"]
}  # "engulfing" -> "CDLENGULFING"


@dataclass(frozen=True, slots=True)
class Candlestick:
    name: str  # TA-Lib's name without the CDL prefix, lower case: "engulfing", "hammer", ...
    index: int  # the bar that completes it
    direction: Literal["bullish", "bearish"]
    strength: int  # TA-Lib's output: 100, or 200 for a confirmed (e.g. hikkake) signal


def candlestick_patterns(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, *,
                         since: int = 0) -> list[Candlestick]:
    """Every recognised candlestick at or after bar ``since``, ordered by bar then name."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close)]
    found = []
    for name, function in RECOGNISERS.items():
        signal = getattr(talib, function)(*arrays)
        for index in np.flatnonzero(signal[since:]) + since:
            value = int(signal[index])
            found.append(Candlestick(name, int(index), "bullish" if value > 0 else "bearish", abs(value)))
    found.sort(key=lambda c: (c.index, c.name))
    return found
