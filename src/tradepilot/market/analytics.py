"""Market analytics over candles: volume and VWAP, volatility estimators, return correlations.

Floats (numpy) live here only; figures that are money (volumes, VWAP) leave as exact or
rounded ``Decimal``. Definitions (also in docs/market-data.md), for ``n`` bars with open
``O``, high ``H``, low ``L``, close ``C`` and log return ``r_t = ln(C_t / C_{t-1})``:

* close-to-close: the sample standard deviation (``n - 1``) of the ``r_t``;
* Parkinson: ``sqrt( sum(ln(H/L)^2) / (4 n ln 2) )``;
* Garman-Klass: ``sqrt( (1/n) sum( 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2 ) )``;
* ATR: Wilder's average true range over ``p`` bars — the mean of the first ``p`` true
  ranges, then ``ATR_t = (ATR_{t-1} (p - 1) + TR_t) / p`` (TA-Lib's definition);
* annualised = per-bar figure × ``sqrt(bars per year)``, with 365 days a year (crypto
  trades every day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np

from tradepilot.market.frame import BarFrame
from tradepilot.market.types import TIMEFRAMES

YEAR_SECONDS = 365 * 86_400
_LN2 = math.log(2.0)


class InsufficientData(ValueError):
    """Too few bars for the figure asked for."""


def bars_per_year(timeframe: str) -> float:
    return YEAR_SECONDS / TIMEFRAMES[timeframe]


@dataclass(frozen=True, slots=True)
class Volatility:
    observations: int  # returns (close-to-close) = bars (range estimators)
    close_to_close: float
    parkinson: float
    garman_klass: float
    atr: float  # in price units
    atr_period: int
    annualisation: float  # sqrt(bars per year)


def volatility(frame: BarFrame, timeframe: str, *, atr_period: int = 14) -> Volatility:
    """The estimators over ``frame``: ``n + 1`` bars give ``n`` returns and the last ``n`` ranges."""
    if len(frame) < 3:
        raise InsufficientData("need at least 3 bars")
    if len(frame) < atr_period + 1:
        raise InsufficientData(f"ATR over {atr_period} bars needs at least {atr_period + 1} bars")
    o, h, low, c = (frame.as_float(name) for name in ("open", "high", "low", "close"))
    returns = np.diff(np.log(c))
    hl = np.log(h[1:] / low[1:])
    co = np.log(c[1:] / o[1:])
    n = returns.size
    close_to_close = float(np.std(returns, ddof=1))
    parkinson = math.sqrt(float(np.sum(hl * hl)) / (4 * n * _LN2))
    garman_klass = math.sqrt(max(0.0, float(np.mean(0.5 * hl * hl - (2 * _LN2 - 1) * co * co))))
    return Volatility(n, close_to_close, parkinson, garman_klass, wilder_atr(h, low, c, atr_period), atr_period,
                      math.sqrt(bars_per_year(timeframe)))


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> float:
    prev = close[:-1]
    true_range = np.maximum(high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    atr = float(np.mean(true_range[:period]))
    for value in true_range[period:]:
        atr = (atr * (period - 1) + float(value)) / period
    return atr


@dataclass(frozen=True, slots=True)
class VolumeFigures:
    volumes: list[Decimal]  # per bar, exact
    quote_volumes: list[Decimal]  # per bar: typical price × volume
    total_volume: Decimal
    total_quote_volume: Decimal
    vwap: Decimal | None  # sum(typical × volume) / sum(volume); None without volume
    average_volume: Decimal | None  # mean volume of the bars before the last
    relative_volume: float | None  # last bar's volume / average_volume


def volume(frame: BarFrame, *, places: int = 10) -> VolumeFigures:
    """Volume by bar, VWAP from typical prices ``(H + L + C) / 3``, relative volume of the last bar."""
    if not len(frame):
        raise InsufficientData("no bars")
    quantum = Decimal(1).scaleb(-places)
    with localcontext() as ctx:
        ctx.prec = 50
        volumes = [frame.decimal("volume", i) for i in range(len(frame))]
        typical = [(frame.decimal("high", i) + frame.decimal("low", i) + frame.decimal("close", i)) / 3
                   for i in range(len(frame))]
        quote = [t * v for t, v in zip(typical, volumes, strict=True)]
        total_volume = sum(volumes, Decimal(0))
        total_quote = sum(quote, Decimal(0))
        vwap = (total_quote / total_volume).quantize(quantum) if total_volume else None
        earlier = volumes[:-1]
        average = sum(earlier, Decimal(0)) / len(earlier) if earlier else None
        relative = float(volumes[-1] / average) if average else None
        return VolumeFigures(volumes, [q.quantize(quantum) for q in quote], total_volume, total_quote.quantize(quantum),
                             vwap, average.quantize(quantum) if average is not None else None, relative)


def log_returns_by_time(frame: BarFrame, timeframe: str) -> dict[int, float]:
    """``{open_time: ln(C_t / C_{t-1})}`` for bars whose previous period is present."""
    span = TIMEFRAMES[timeframe] * 1000
    times = frame.open_time
    closes = frame.as_float("close")
    consecutive = np.flatnonzero(np.diff(times) == span) + 1
    values = np.log(closes[consecutive] / closes[consecutive - 1])
    return dict(zip(times[consecutive].tolist(), values.tolist(), strict=True))


def correlation_matrix(returns: dict[str, dict[int, float]]) -> tuple[list[int], np.ndarray]:
    """Pearson correlations of the symbols' returns over the times they all have."""
    symbols = list(returns)
    common = sorted(set.intersection(*(set(r) for r in returns.values()))) if symbols else []
    if len(common) < 3:
        raise InsufficientData("fewer than 3 common returns")
    data = np.array([[returns[s][t] for t in common] for s in symbols])
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(data) if len(symbols) > 1 else np.ones((1, 1))
    return common, np.atleast_2d(matrix)
