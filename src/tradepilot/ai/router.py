"""/api/ai: the models, market analysis, direction predictions and sentiment (docs/ai.md).

Reads need the ``read`` scope. Analysis runs the numeric work in a thread: a few thousand
bars take tens of milliseconds, which must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import Query, status

from tradepilot.ai.analysis import InsufficientHistory, analyse, summarise
from tradepilot.ai.direction_registry import ModelRefused, direction_registry
from tradepilot.ai.features import WARMUP, Candles
from tradepilot.ai.models_catalog import (
    built_in_models,
    direction_models,
    regime_model,
    sentiment_model,
)
from tradepilot.ai.schemas import (
    AnalyzeMarket,
    DirectionModelInfo,
    ForecastScores,
    LevelOut,
    MarketAnalysis,
    MarketAnalysisList,
    ModelList,
    ModelOut,
    Prediction,
    ReturnInterval,
    SentimentHistory,
    SentimentIngest,
    SentimentIngested,
    SentimentReadingOut,
)
from tradepilot.ai.sentiment_store import cashtag_symbols, sentiment_over_time, store_texts
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser
from tradepilot.market.deps import Market, as_utc
from tradepilot.market.schemas import Timeframe
from tradepilot.market.service import MarketService
from tradepilot.market.types import Bar
from tradepilot.strategies.deps import ReadUser

logger = logging.getLogger("tradepilot.ai")

router = api_router(prefix="/api/ai", tags=["ai"])
PREDICTION_BARS = 200  # the features' longest window is 50 bars (SMA 50), the warm-up 60
MODEL_RETRY_AFTER_SECONDS = 300  # a first training on two years of hourly bars takes minutes


@router.get("/models", response_model=ModelList)
async def list_models(_: ReadUser, runtime: RuntimeDep) -> ModelList:
    """The built-in models with what they were fitted on and their measured scores beside
    their baselines."""
    found = await asyncio.to_thread(lambda: built_in_models() + direction_models(direction_registry(runtime)))
    return ModelList(items=[ModelOut(**m) for m in found])


def _candles(bars: list[Bar]) -> Candles:
    columns = [np.array([float(getattr(b, name)) for b in bars]) for name in ("open", "high", "low", "close", "volume")]
    return Candles(np.array([b.open_time.timestamp() for b in bars]), *columns)


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def _analysis(market: MarketService, symbol: str, timeframe: str, bars: int) -> MarketAnalysis:
    found = [b for b in await market.read_candles(symbol, timeframe, None, None, bars + 1) if b.closed][-bars:]
    candles = _candles(found)
    try:
        facts = await asyncio.to_thread(analyse, candles, regime_model())
    except InsufficientHistory as exc:
        raise Unprocessable(f"Not enough {timeframe} candles of {symbol} to analyse: {exc}.",
                            code="insufficient_data") from None
    times = candles.time
    return MarketAnalysis(
        symbol=symbol, timeframe=timeframe, as_of=_rfc3339(times[-1]), bars=facts.bars, last_price=facts.last_price,
        trend=facts.trend, regime=facts.regime, momentum=facts.momentum, volatility=facts.volatility,
        support=[LevelOut(price=lv.price, touches=lv.touches, last_touch=_rfc3339(times[lv.last_touch]))
                 for lv in facts.support],
        resistance=[LevelOut(price=lv.price, touches=lv.touches, last_touch=_rfc3339(times[lv.last_touch]))
                    for lv in facts.resistance],
        patterns=[{**p, "start": _rfc3339(p["start"]), "confirmed": _rfc3339(p["confirmed"])} for p in facts.patterns],
        candlesticks=[{**c, "time": _rfc3339(c["time"])} for c in facts.candlesticks],
        summary=summarise(symbol, timeframe, facts), summary_source="template")


@router.post("/analyze-market", response_model=MarketAnalysisList)
async def analyze_market(body: AnalyzeMarket, market: Market, _: ReadUser) -> MarketAnalysisList:
    """Per symbol: trend, regime, momentum, volatility, support and resistance, patterns, and a
    summary written from those facts. 404 for an unknown symbol, 422 ``insufficient_data``
    with fewer than 200 closed bars."""
    symbols = list(dict.fromkeys(market.instrument(s).symbol for s in body.symbols))  # 404s before any work
    return MarketAnalysisList(items=[await _analysis(market, s, body.timeframe, body.bars) for s in symbols])


def _simple(log_return: float) -> float:
    return round(math.expm1(log_return), 6)


@router.get("/predictions", response_model=Prediction)
async def predictions(_: ReadUser, market: Market, runtime: RuntimeDep,
                      symbol: Annotated[str, Query(description="BTC/USDT or BTC-USDT")],
                      timeframe: Timeframe = "1h", horizon: Annotated[int, Query(ge=1, le=500)] = 1) -> Prediction:
    """P(up) and the expected return with its 10–90% interval over ``horizon`` bars from the
    latest closed bar, beside the model's walk-forward out-of-sample scores and the baselines'.
    503 ``model_not_ready`` (with ``Retry-After``) until the model is trained; 404 for an
    unknown symbol; 422 ``insufficient_data`` without enough closed bars."""
    instrument = market.instrument(symbol)
    registry = direction_registry(runtime)
    key = registry.key(market.venue, instrument.symbol, timeframe, horizon)
    try:
        model = await asyncio.to_thread(registry.load, key)
    except ModelRefused as exc:
        logger.warning("direction model file refused", extra={"reason": str(exc)})
        model = None
    if model is None:
        raise ServiceUnavailable(f"No direction model for {instrument.symbol} {timeframe}, horizon {horizon}, "
                                 "is trained yet; it is trained by the ai.train_direction job.",
                                 code="model_not_ready", headers={"Retry-After": str(MODEL_RETRY_AFTER_SECONDS)})
    found = [b for b in await market.read_candles(instrument.symbol, timeframe, None, None, PREDICTION_BARS + 1)
             if b.closed][-PREDICTION_BARS:]
    forecast = await asyncio.to_thread(model.predict, _candles(found)) if len(found) > WARMUP else None
    if forecast is None:
        raise Unprocessable(f"Not enough {timeframe} candles of {instrument.symbol} to predict from: "
                            f"{len(found)} closed bars, {WARMUP + 1} needed.", code="insufficient_data")
    meta = model.meta
    walk = meta["scores"]
    return Prediction(
        symbol=instrument.symbol, timeframe=timeframe, horizon=horizon, as_of=_rfc3339(found[-1].open_time.timestamp()),
        last_close=float(found[-1].close), probability_up=round(forecast.probability_up, 6),
        expected_return=_simple(forecast.expected_return),
        interval=ReturnInterval(low=_simple(forecast.interval[0]), high=_simple(forecast.interval[1])),
        scores=ForecastScores(**walk["model"]),
        baselines={name: ForecastScores(**walk[name]) for name in ("linear", "always_up", "last_direction")},
        beats_baselines=walk["beats_baselines"],
        model=DirectionModelInfo(name="direction-lightgbm", trained_at=meta["trained_at"],
                                 training_window=meta["window"], bars=meta["bars"], features=meta["features"],
                                 test_bars=walk["test_bars"], folds=walk["folds"]))


@router.post("/sentiment", status_code=status.HTTP_201_CREATED, response_model=SentimentIngested)
async def ingest_sentiment(body: SentimentIngest, principal: CurrentUser, db: DbSession, market: Market,
                           runtime: RuntimeDep) -> SentimentIngested:
    """Score texts (headlines, posts) with the sentiment model and keep them, per symbol they
    name (``symbols`` and ``$CASHTAGS`` of listed markets) — or as general market texts. A
    text already kept is scored again but stored once (``duplicate``). 404 for an unknown
    symbol."""
    now = runtime.clock.now()
    by_base: dict[str, list[str]] = {}
    for instrument in market.instruments():
        by_base.setdefault(instrument.base.upper(), []).append(instrument.symbol)
    items = []
    for entry in body.texts:
        named = {market.instrument(s).symbol for s in entry.symbols}
        published = as_utc(entry.published_at) or now
        items.append((entry.text, named | cashtag_symbols(entry.text, by_base), min(published, now), entry.source))
    answers = await store_texts(db, sentiment_model(), principal.id, items, now)
    await db.commit()
    return SentimentIngested(model="sentiment-tfidf-vader", items=[SentimentReadingOut(**a) for a in answers])


@router.get("/sentiment", response_model=SentimentHistory)
async def sentiment_history(principal: ReadUser, db: DbSession, market: Market, runtime: RuntimeDep,
                            symbol: Annotated[str | None, Query(description="BTC/USDT; omitted: general texts")] = None,
                            interval: Literal["1h", "1d", "1w"] = "1d",
                            start: datetime | None = None, end: datetime | None = None) -> SentimentHistory:
    """Your texts' sentiment per period (mean score, label counts) and over the range
    (default: the last 30 days)."""
    chosen = market.instrument(symbol).symbol if symbol else None
    end_at = as_utc(end) or runtime.clock.now()
    start_at = as_utc(start) or end_at - timedelta(days=30)
    if start_at >= end_at:
        raise Unprocessable("start must be before end.", code="invalid_range")
    found = await sentiment_over_time(db, principal.id, chosen, start_at, end_at, interval)
    return SentimentHistory(symbol=chosen, interval=interval, start=start_at, end=end_at, **found)
