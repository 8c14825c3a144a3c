"""What the regime classifier looks at: scale-free statistics of one window of closes.

Each feature answers one question about the window, measured on log returns so it holds
for any price level and timeframe:

- ``trend_t``: is there a drift? |mean| / std x sqrt(n) — a t-statistic.
- ``efficiency``: how straight is the path? |net move| / total distance travelled.
- ``variance_ratio``: do moves add up (> 1: trend), cancel out (< 1: mean reversion) or
  neither (about 1: a random walk)? Lo and MacKinlay's ratio over 8-bar returns.
- ``autocorrelation``: lag-1 autocorrelation of returns (negative when mean-reverting).
- ``crossings``: how often the price crosses its own window mean, per bar.
- ``vol_clustering``: mean autocorrelation of squared returns, lags 1..5 (GARCH-like).
- ``kurtosis``: excess kurtosis of returns (fat tails).
- ``vol_ratio``: log of the window's typical one-bar move over that of the history before
  it, both median-based (earlier bursts do not inflate the reference, fat tails do not
  inflate the window) — a volatile regime is volatile *for this market*.
"""

from __future__ import annotations

import math

import numpy as np

FEATURES = ("trend_t", "efficiency", "variance_ratio", "autocorrelation", "crossings", "vol_clustering",
            "kurtosis", "vol_ratio")
WINDOW = 120  # bars in the window classified
HISTORY = 1000  # bars before it that set the market's normal volatility
VR_LAG = 8


def _autocorr(x: np.ndarray, lag: int) -> float:
    a, b = x[:-lag] - x.mean(), x[lag:] - x.mean()
    denominator = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


def _robust_scale(moves: np.ndarray) -> float:
    """The normal one-bar move, unmoved by the bursts a volatile history contains."""
    return 1.4826 * float(np.median(np.abs(moves - np.median(moves))))


def window_features(log_close: np.ndarray, end: int, window: int = WINDOW, history: int = HISTORY) -> np.ndarray:
    """The features of the ``window`` bars ending at ``end`` (inclusive), from bars <= end only.

    NaN features (too little data, a flat market) are the caller's signal that there is
    nothing to classify.
    """
    start = end - window + 1
    if start < 1:
        return np.full(len(FEATURES), np.nan)
    prices = log_close[start:end + 1]
    r = np.diff(log_close[start - 1:end + 1])
    sd = float(np.std(r))
    if not sd > 0:
        return np.full(len(FEATURES), np.nan)
    trend_t = abs(float(np.mean(r))) / sd * math.sqrt(r.size)
    efficiency = abs(float(prices[-1] - prices[0])) / float(np.sum(np.abs(r)))
    q = np.convolve(r, np.ones(VR_LAG), mode="valid")  # overlapping 8-bar returns
    variance_ratio = float(np.var(q)) / (VR_LAG * sd * sd)
    centred = prices - prices.mean()
    crossings = float(np.count_nonzero(np.diff(np.sign(centred)) != 0)) / prices.size
    squared = r * r
    vol_clustering = float(np.mean([_autocorr(squared, lag) for lag in range(1, 6)]))
    kurtosis = float(np.mean((r - r.mean()) ** 4) / sd ** 4 - 3.0)
    before = np.diff(log_close[max(0, start - history):start])
    now = _robust_scale(r)
    base = _robust_scale(before) if before.size >= 30 else now
    vol_ratio = math.log(now / base) if base > 0 and now > 0 else 0.0
    return np.array([trend_t, efficiency, variance_ratio, _autocorr(r, 1), crossings, vol_clustering, kurtosis,
                     vol_ratio])
