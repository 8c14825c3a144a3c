"""/api/ai: the models, market analysis, direction predictions and sentiment (docs/ai.md).

Reads need the ``read`` scope. Analysis runs the numeric work in a thread: a few thousand
bars take tens of milliseconds, which must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.active_models import SUMMARY_TEMPLATE, active_model, provider_of
from tradepilot.ai.analysis import InsufficientHistory, analyse, summarise
from tradepilot.ai.direction_registry import direction_registry
from tradepilot.ai.features import Candles
from tradepilot.ai.llm_summary import summarise_with_llm
from tradepilot.ai.market_candles import candles_of
from tradepilot.ai.models_catalog import (
    built_in_models,
    direction_models,
    regime_model,
    sentiment_model,
)
from tradepilot.ai.predictions import closed_bars, direction_forecast, rfc3339
from tradepilot.ai.schemas import (
    AnalysisSentiment,
    AnalyzeMarket,
    LevelOut,
    MarketAnalysis,
    MarketAnalysisList,
    ModelList,
    ModelOut,
    Prediction,
    SentimentHistory,
    SentimentIngest,
    SentimentIngested,
    SentimentReadingOut,
)
from tradepilot.ai.sentiment_store import (
    RECENT,
    cashtag_symbols,
    sentiment_over_time,
    sentiment_summary,
    store_texts,
)
from tradepilot.config import Settings
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser
from tradepilot.market.deps import Market, as_utc
from tradepilot.market.schemas import Timeframe
from tradepilot.market.service import MarketService
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime
from tradepilot.strategies.deps import ReadUser

logger = logging.getLogger("tradepilot.ai")

router = api_router(prefix="/api/ai", tags=["ai"])


@router.get("/models", response_model=ModelList)
async def list_models(_: ReadUser, runtime: RuntimeDep) -> ModelList:
    """The built-in models with what they were fitted on and their measured scores beside
    their baselines."""
    found = await asyncio.to_thread(lambda: built_in_models() + direction_models(direction_registry(runtime)))
    return ModelList(items=[ModelOut(**m) for m in found + summary_and_llm_models(runtime.settings)])


def summary_and_llm_models(settings: Settings) -> list[dict[str, Any]]:
    """The template summary and the operator's LLM providers (name and model; never the key
    nor the endpoint's address)."""
    template = {"name": SUMMARY_TEMPLATE, "task": "summary", "kind": "template over the analysis facts",
                "status": "ready", "classes": [], "trained_on": None, "scores": {}, "baselines": {}}
    return [template] + [
        {"name": p.registry_name, "task": "chat", "kind": "LLM (OpenAI-compatible chat completions)",
         "status": "configured", "classes": [], "trained_on": None, "scores": {}, "baselines": {},
         "parameters": {"provider": p.name, "model": p.model, "tasks": ["chat", "summary"],
                        "timeout_seconds": p.timeout_seconds, "max_answer_tokens": p.max_answer_tokens}}
        for p in settings.llm_providers]


def _candles(bars: list[Bar]) -> Candles:
    return candles_of(bars)


async def _analysis(runtime: Runtime, market: MarketService, symbol: str, body: AnalyzeMarket,
                    sentiment: AnalysisSentiment | None) -> MarketAnalysis:
    """One symbol's facts, the direction model's prediction and the template's summary of both."""
    timeframe = body.timeframe
    found = await closed_bars(market, symbol, timeframe, body.bars)
    candles = _candles(found)
    try:
        facts = await asyncio.to_thread(analyse, candles, regime_model())
    except InsufficientHistory as exc:
        raise Unprocessable(f"Not enough {timeframe} candles of {symbol} to analyse: {exc}.",
                            code="insufficient_data") from None
    prediction, prediction_reason = None, None
    try:
        prediction = await direction_forecast(runtime, market, symbol, timeframe, body.horizon)
    except (ServiceUnavailable, Unprocessable) as exc:  # model_not_ready | insufficient_data
        prediction_reason = exc.code
    facts.extras["prediction"] = None if prediction is None else prediction.model_dump(mode="json")
    facts.extras["sentiment"] = None if sentiment is None else {
        **sentiment.model_dump(mode="json"), "days": round((sentiment.end - sentiment.start) / timedelta(days=1))}
    times = candles.time
    return MarketAnalysis(
        symbol=symbol, timeframe=timeframe, as_of=rfc3339(times[-1]), bars=facts.bars, last_price=facts.last_price,
        trend=facts.trend, regime=facts.regime, momentum=facts.momentum, volatility=facts.volatility,
        support=[LevelOut(price=lv.price, touches=lv.touches, last_touch=rfc3339(times[lv.last_touch]))
                 for lv in facts.support],
        resistance=[LevelOut(price=lv.price, touches=lv.touches, last_touch=rfc3339(times[lv.last_touch]))
                    for lv in facts.resistance],
        patterns=[{**p, "start": rfc3339(p["start"]), "confirmed": rfc3339(p["confirmed"])} for p in facts.patterns],
        candlesticks=[{**c, "time": rfc3339(c["time"])} for c in facts.candlesticks],
        sentiment=sentiment, sentiment_reason=None if sentiment is not None else "no_texts",
        prediction=prediction, prediction_reason=prediction_reason,
        summary=summarise(symbol, timeframe, facts), summary_source="template")


async def _recent_sentiment(db: AsyncSession, user_id: uuid.UUID, symbol: str,
                            now: datetime) -> AnalysisSentiment | None:
    """``GET /sentiment?symbol=``'s ``overall`` over its default range; None without texts."""
    start = now - RECENT
    found = await sentiment_summary(db, user_id, symbol, start, now)
    return AnalysisSentiment(**found, start=start, end=now) if found["texts"] else None


@router.post("/analyze-market", response_model=MarketAnalysisList)
async def analyze_market(body: AnalyzeMarket, market: Market, principal: ReadUser, db: DbSession,
                         runtime: RuntimeDep) -> MarketAnalysisList:
    """Per symbol: trend, regime, momentum, volatility, support and resistance, patterns, the
    sentiment of the symbol's texts of the last 30 days (``null`` with ``sentiment_reason``
    without any), the direction model's prediction (``null`` with ``prediction_reason`` until
    it is trained), and a summary written from those facts — by your active summary LLM when
    you chose one (one AI call per symbol; on any failure the template's, with
    ``summary_source: "template_fallback"``). 404 for an unknown symbol, 422
    ``insufficient_data`` with fewer than 200 closed bars."""
    symbols = list(dict.fromkeys(market.instrument(s).symbol for s in body.symbols))  # 404s before any work
    provider = provider_of(runtime.settings, await active_model(db, runtime.settings, principal.id, "summary"))
    now = runtime.clock.now()
    moods = {s: await _recent_sentiment(db, principal.id, s, now) for s in symbols}
    await db.rollback()  # no read transaction held across the analysis
    items = []
    for symbol in symbols:  # every symbol's facts before any LLM call: a 422 on the last one costs no quota
        items.append(await _analysis(runtime, market, symbol, body, moods[symbol]))
    if provider is None:
        return MarketAnalysisList(items=items)
    summarised, failure = [], None
    for item in items:
        if failure is not None:  # one failure is enough: no ten timeouts in a row
            summarised.append(item.model_copy(update={"summary_source": "template_fallback", "summary_error": failure}))
            continue
        summarised.append(await summarise_with_llm(runtime, db, principal.id, provider, item))
        failure = summarised[-1].summary_error
    return MarketAnalysisList(items=summarised)


@router.get("/predictions", response_model=Prediction)
async def predictions(_: ReadUser, market: Market, runtime: RuntimeDep,
                      symbol: Annotated[str, Query(description="BTC/USDT or BTC-USDT")],
                      timeframe: Timeframe = "1h", horizon: Annotated[int, Query(ge=1, le=500)] = 1) -> Prediction:
    """P(up) and the expected return with its 10–90% interval over ``horizon`` bars from the
    latest closed bar, beside the model's walk-forward out-of-sample scores and the baselines'.
    503 ``model_not_ready`` (with ``Retry-After``) until the model is trained; 404 for an
    unknown symbol; 422 ``insufficient_data`` without enough closed bars."""
    return await direction_forecast(runtime, market, symbol, timeframe, horizon)


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
    start_at = as_utc(start) or end_at - RECENT
    if start_at >= end_at:
        raise Unprocessable("start must be before end.", code="invalid_range")
    found = await sentiment_over_time(db, principal.id, chosen, start_at, end_at, interval)
    return SentimentHistory(symbol=chosen, interval=interval, start=start_at, end=end_at, **found)
