"""Training a direction model from the candle store: walk-forward scores, then a fit on all of it.

Used by the ``ai.train_direction`` job (``ai/direction_job.py``) and by
``tradepilot ai train direction``. Only closed bars are used: a bar whose period has not ended
at ``now`` is still changing and is left out. Synchronous (file reads, LightGBM): run it in a
thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tradepilot.ai.direction import DirectionModel, walk_forward
from tradepilot.ai.direction_registry import DirectionRegistry, ModelKey
from tradepilot.ai.features import WARMUP, Candles
from tradepilot.market.frame import BarFrame, timeframe_ms, to_ms
from tradepilot.market.store import CandleStore

FOLDS = 5
MIN_TRAIN_ROWS = 300  # the first walk-forward window holds at least this many rows (or 40% of them)
MIN_BARS = WARMUP + MIN_TRAIN_ROWS + FOLDS * 50 + 24  # walk_forward's own minimum, plus warm-up and labels


class InsufficientHistory(ValueError):
    """Too few closed bars stored to train and validate a model."""


@dataclass(frozen=True)
class Target:
    symbol: str
    timeframe: str
    horizon: int

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "timeframe": self.timeframe, "horizon": self.horizon}


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def candles_of(frame: BarFrame) -> Candles:
    return Candles(frame.open_time.astype(np.float64) / 1000.0,
                   *(frame.as_float(name) for name in ("open", "high", "low", "close", "volume")))


def closed_frame(store: CandleStore, symbol: str, timeframe: str, now: datetime) -> BarFrame:
    """Every stored bar of the symbol whose period ended by ``now``."""
    frame = store.read(symbol, timeframe)
    ended = frame.open_time + timeframe_ms(timeframe) <= to_ms(now)
    return frame if bool(np.all(ended)) else frame.take(np.flatnonzero(ended))


def train_direction(store: CandleStore, registry: DirectionRegistry, target: Target, now: datetime) -> dict[str, Any]:
    """Score by walk-forward, fit on every closed bar, save; returns the saved model's metadata."""
    key: ModelKey = registry.key(store.venue, target.symbol, target.timeframe, target.horizon)
    candles = candles_of(closed_frame(store, key.symbol, key.timeframe, now))
    if len(candles) < MIN_BARS:
        raise InsufficientHistory(f"{store.venue} {key.symbol} {key.timeframe}: {len(candles)} closed bars stored, "
                                  f"a direction model needs at least {MIN_BARS}")
    usable = len(candles) - WARMUP - key.horizon
    try:
        scores = walk_forward(candles, key.horizon, folds=FOLDS, min_train=max(MIN_TRAIN_ROWS, int(0.4 * usable)))
    except ValueError as exc:  # gaps of NaN features leave too few usable rows
        raise InsufficientHistory(f"{store.venue} {key.symbol} {key.timeframe}: {exc}") from None
    meta = {"trained_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "window": {"first_bar": rfc3339(candles.time[0]), "last_bar": rfc3339(candles.time[-1])},
            "bars": len(candles), "scores": scores}
    model = DirectionModel.fit(candles, key.horizon, meta)
    registry.save(key, model)
    return {**model.meta, "venue": key.venue, "symbol": key.symbol, "timeframe": key.timeframe,
            "horizon": key.horizon}
