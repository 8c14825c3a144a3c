"""Indicators from TA-Lib, and the crossover tests the strategies share.

Every indicator returns float64 arrays as long as its input, NaN during its warm-up (TA-Lib's
convention). Nothing here is hand-rolled where TA-Lib has it; only the crossover and
threshold tests are ours, because they are comparisons, not indicators.
"""

from __future__ import annotations

import numpy as np
import talib

__all__ = ["atr", "bbands", "crossed_above", "crossed_below", "ema", "macd", "roc", "rsi", "sma", "stddev", "wma"]


def _f(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def sma(values: np.ndarray, period: int) -> np.ndarray:
    return talib.SMA(_f(values), timeperiod=period)  # type: ignore[no-any-return]


def ema(values: np.ndarray, period: int) -> np.ndarray:
    return talib.EMA(_f(values), timeperiod=period)  # type: ignore[no-any-return]


def wma(values: np.ndarray, period: int) -> np.ndarray:
    return talib.WMA(_f(values), timeperiod=period)  # type: ignore[no-any-return]


def rsi(values: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.RSI(_f(values), timeperiod=period)  # type: ignore[no-any-return]


def roc(values: np.ndarray, period: int = 10) -> np.ndarray:
    return talib.ROC(_f(values), timeperiod=period)  # type: ignore[no-any-return]


def stddev(values: np.ndarray, period: int = 20) -> np.ndarray:
    return talib.STDDEV(_f(values), timeperiod=period, nbdev=1.0)  # type: ignore[no-any-return]


def bbands(values: np.ndarray, period: int = 20, deviations: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, middle, lower) Bollinger bands: SMA ± ``deviations`` population std devs."""
    upper, middle, lower = talib.BBANDS(_f(values), timeperiod=period, nbdevup=deviations, nbdevdn=deviations,
                                        matype=0)
    return upper, middle, lower


def macd(values: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd, signal, histogram), EMAs as TA-Lib computes them."""
    line, sig, hist = talib.MACD(_f(values), fastperiod=fast, slowperiod=slow, signalperiod=signal)
    return line, sig, hist


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.ATR(_f(high), _f(low), _f(close), timeperiod=period)  # type: ignore[no-any-return]


def _as_array(value: np.ndarray | float, like: np.ndarray) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.full(like.shape, float(value))


def crossed_above(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """True at ``t`` when ``a`` was strictly below ``b`` at ``t-1`` and is strictly above at ``t``.

    Strict on both sides, as backtesting.py's ``crossover`` and vectorbt's ``crossed_above``
    (a touch is not a cross); NaN on either side is never a cross.
    """
    like = a if isinstance(a, np.ndarray) else b
    assert isinstance(like, np.ndarray), "one side of a crossover must be a series"
    x, y = _as_array(a, like), _as_array(b, like)
    out = np.zeros(x.shape, dtype=bool)
    if x.size > 1:
        with np.errstate(invalid="ignore"):
            out[1:] = (x[:-1] < y[:-1]) & (x[1:] > y[1:])
    return out


def crossed_below(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """True at ``t`` when ``a`` crosses strictly from above ``b`` to below it."""
    return crossed_above(b, a)
