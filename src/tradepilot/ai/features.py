"""Model inputs from candles: every feature at bar t is computed from bars 0..t only.

Returns, volatility, TA-Lib indicators and volume, all scale-free (log ratios, z-scores,
oscillators) so a model fitted on one market can be read on another. TA-Lib's indicators
are causal (each output uses the inputs up to its bar); the rolling statistics here are
trailing windows. ``tests/unit/test_ai_direction.py::test_features_at_t_use_only_bars_up_to_t``
changes the future and checks that no past row moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import talib

FEATURE_NAMES = (
    "ret_1", "ret_3", "ret_6", "ret_12", "ret_24", "vol_12", "vol_48", "vol_ratio", "rsi_14", "macd_hist",
    "bb_percent", "atr_14", "sma_20_gap", "sma_50_gap", "range", "volume_z",
)
WARMUP = 60  # bars before the first row with every feature defined


@dataclass(frozen=True)
class Candles:
    """Arrays of one symbol's bars, oldest first; ``time`` in epoch seconds."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.size)

    def head(self, n: int) -> Candles:
        return Candles(*(a[:n] for a in (self.time, self.open, self.high, self.low, self.close, self.volume)))


def _trailing(values: np.ndarray, window: int, reducer: str) -> np.ndarray:
    out = np.full(values.size, np.nan)
    if values.size >= window:
        view = np.lib.stride_tricks.sliding_window_view(values, window)
        out[window - 1:] = getattr(np, reducer)(view, axis=1)
    return out


def _lagged_return(log_close: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(log_close.size, np.nan)
    out[lag:] = log_close[lag:] - log_close[:-lag]
    return out


def feature_matrix(candles: Candles) -> np.ndarray:
    """(bars, features): row t from bars up to t; NaN where a window is not yet full."""
    close = np.ascontiguousarray(candles.close, dtype=np.float64)
    high = np.ascontiguousarray(candles.high, dtype=np.float64)
    low = np.ascontiguousarray(candles.low, dtype=np.float64)
    volume = np.ascontiguousarray(candles.volume, dtype=np.float64)
    log_close = np.log(close)
    r1 = _lagged_return(log_close, 1)
    vol_12 = _trailing(np.nan_to_num(r1), 12, "std")
    vol_48 = _trailing(np.nan_to_num(r1), 48, "std")
    upper, _middle, lower = talib.BBANDS(close, timeperiod=20)
    width = upper - lower
    macd_hist = talib.MACD(close)[2] / close
    log_volume = np.log1p(np.maximum(volume, 0))
    v_mean, v_std = _trailing(log_volume, 48, "mean"), _trailing(log_volume, 48, "std")
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = [
            r1, _lagged_return(log_close, 3), _lagged_return(log_close, 6), _lagged_return(log_close, 12),
            _lagged_return(log_close, 24), vol_12, vol_48, np.log(vol_12 / vol_48),
            talib.RSI(close, timeperiod=14) / 100.0, macd_hist,
            np.where(width > 0, (close - lower) / width, 0.5), talib.ATR(high, low, close, timeperiod=14) / close,
            np.log(close / talib.SMA(close, timeperiod=20)), np.log(close / talib.SMA(close, timeperiod=50)),
            np.log(high / low), np.where(v_std > 0, (log_volume - v_mean) / v_std, 0.0),
        ]
    matrix = np.column_stack(columns)
    matrix[~np.isfinite(matrix)] = np.nan
    matrix[:WARMUP] = np.nan
    return matrix


def forward_return(candles: Candles, horizon: int) -> np.ndarray:
    """The label side: log return from bar t's close to bar t+horizon's (NaN at the end)."""
    log_close = np.log(np.asarray(candles.close, dtype=np.float64))
    out = np.full(log_close.size, np.nan)
    out[:-horizon] = log_close[horizon:] - log_close[:-horizon]
    return out
