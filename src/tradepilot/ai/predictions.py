"""The direction model's forecast from the latest closed bars, in one place.

``GET /api/ai/predictions``, each analyze-market answer, ``AdvancedAI.predict_price_movement``
and model-made signals (``signals/generate.py``) all load the trained model the same way
(503 ``model_not_ready`` with ``Retry-After`` until it exists), read the same closed bars and
predict from them; only what they do with the forecast differs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tradepilot.ai.direction import DirectionModel
from tradepilot.ai.direction import Prediction as Forecast
from tradepilot.ai.direction_registry import ModelRefused, direction_registry
from tradepilot.ai.features import WARMUP
from tradepilot.ai.market_candles import candles_of
from tradepilot.ai.schemas import DirectionModelInfo, ForecastScores, Prediction, ReturnInterval
from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.market.types import Bar

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ai")

PREDICTION_BARS = 200  # the features' longest window is 50 bars (SMA 50), the warm-up 60
MODEL_RETRY_AFTER_SECONDS = 300  # a first training on two years of hourly bars takes minutes


@dataclass(frozen=True, slots=True)
class LatestForecast:
    model: DirectionModel
    bars: list[Bar]  # the closed bars it was made from, oldest first
    forecast: Forecast | None  # None: fewer bars than the features' warm-up


async def closed_bars(market: MarketService, symbol: str, timeframe: str, count: int,
                      until: datetime | None = None) -> list[Bar]:
    """The newest ``count`` closed bars (the forming one is never a model's input); ``until``:
    only bars opening before it (a strategy run's bar: nothing after it is seen)."""
    return [b for b in await market.read_candles(symbol, timeframe, None, until, count + 1) if b.closed][-count:]


async def trained_model(runtime: Runtime, market: MarketService, symbol: str, timeframe: str,
                        horizon: int) -> DirectionModel:
    """The direction model of ``symbol`` / ``timeframe`` / ``horizon`` from the registry; 503
    ``model_not_ready`` (with Retry-After) when none is trained or its file is refused."""
    registry = direction_registry(runtime)
    try:
        model = await asyncio.to_thread(registry.load, registry.key(market.venue, symbol, timeframe, horizon))
    except ModelRefused as exc:
        logger.warning("direction model file refused", extra={"reason": str(exc)})
        model = None
    if model is None:
        raise ServiceUnavailable(f"No direction model for {symbol} {timeframe}, horizon {horizon}, is trained "
                                 "yet; the ai.train_direction job or `tradepilot ai train direction` trains it.",
                                 code="model_not_ready", headers={"Retry-After": str(MODEL_RETRY_AFTER_SECONDS)})
    return model


async def latest_forecast(runtime: Runtime, market: MarketService, symbol: str, timeframe: str,
                          horizon: int, until: datetime | None = None) -> LatestForecast:
    """The trained model's forecast from the newest closed bars (opening before ``until`` when
    given); 503 ``model_not_ready`` without one."""
    model = await trained_model(runtime, market, symbol, timeframe, horizon)
    found = await closed_bars(market, symbol, timeframe, PREDICTION_BARS, until)
    forecast = await asyncio.to_thread(model.predict, candles_of(found)) if len(found) > WARMUP else None
    return LatestForecast(model, found, forecast)


async def direction_forecast(runtime: Runtime, market: MarketService, symbol: str, timeframe: str,
                             horizon: int) -> Prediction:
    """The answer of ``GET /predictions``: the forecast beside the model's walk-forward scores and
    the baselines'; 422 ``insufficient_data`` without enough closed bars."""
    instrument = market.instrument(symbol)
    latest = await latest_forecast(runtime, market, instrument.symbol, timeframe, horizon)
    forecast, found = latest.forecast, latest.bars
    if forecast is None:
        raise Unprocessable(f"Not enough {timeframe} candles of {instrument.symbol} to predict from: "
                            f"{len(found)} closed bars, {WARMUP + 1} needed.", code="insufficient_data")
    meta = latest.model.meta
    walk = meta["scores"]
    return Prediction(
        symbol=instrument.symbol, timeframe=timeframe, horizon=horizon, as_of=rfc3339(found[-1].open_time.timestamp()),
        last_close=float(found[-1].close), probability_up=round(forecast.probability_up, 6),
        expected_return=simple_return(forecast.expected_return),
        interval=ReturnInterval(low=simple_return(forecast.interval[0]), high=simple_return(forecast.interval[1])),
        scores=ForecastScores(**walk["model"]),
        baselines={name: ForecastScores(**walk[name]) for name in ("linear", "always_up", "last_direction")},
        beats_baselines=walk["beats_baselines"],
        model=DirectionModelInfo(name="direction-lightgbm", trained_at=meta["trained_at"],
                                 training_window=meta["window"], bars=meta["bars"], features=meta["features"],
                                 test_bars=walk["test_bars"], folds=walk["folds"]))


def simple_return(log_return: float) -> float:
    return round(math.expm1(log_return), 6)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
