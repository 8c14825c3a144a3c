"""Request and response bodies of /api/ai (docs/ai.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from tradepilot.core.schemas import Schema
from tradepilot.market.schemas import Timeframe


class ModelOut(Schema):
    name: str
    task: str
    kind: str
    status: str
    classes: list[str]
    trained_on: str | None
    scores: dict[str, Any]
    baselines: dict[str, Any]
    parameters: dict[str, Any] | None = None


class ModelList(Schema):
    items: list[ModelOut]


class AnalyzeMarket(Schema):
    symbols: list[str] = Field(min_length=1, max_length=10, description="e.g. ['BTC/USDT', 'ETH-USDT']")
    timeframe: Timeframe = "1h"
    bars: int = Field(default=1000, ge=200, le=5000, description="history analysed, newest bars")
    horizon: int = Field(default=1, ge=1, le=500, description="bars ahead of the direction model's prediction")


class LevelOut(Schema):
    price: float
    touches: int
    last_touch: str  # the bar's open time, RFC 3339


class MarketAnalysis(Schema):
    symbol: str
    timeframe: str
    as_of: str  # the last bar's open time
    bars: int
    last_price: float
    trend: dict[str, Any]
    regime: dict[str, Any] | None
    momentum: dict[str, Any]
    volatility: dict[str, Any]
    support: list[LevelOut]
    resistance: list[LevelOut]
    patterns: list[dict[str, Any]]
    candlesticks: list[dict[str, Any]]
    sentiment: AnalysisSentiment | None = None  # the symbol's texts of the last 30 days (yours and the feeds')
    sentiment_reason: str | None = None  # why sentiment is null: no_texts
    summary: str
    summary_source: str  # "template", "llm:<provider>" (your active summary model), or "template_fallback"
    summary_error: str | None = None  # with template_fallback: why the LLM's summary is missing (a problem code)
    prediction: Prediction | None = None  # the direction model's, from the latest closed bar
    prediction_reason: str | None = None  # why prediction is null: model_not_ready | insufficient_data


class MarketAnalysisList(Schema):
    items: list[MarketAnalysis]


class TextIn(Schema):
    text: str = Field(min_length=1, max_length=2000)
    symbols: list[str] = Field(default_factory=list, max_length=5, description="besides the text's cashtags")
    published_at: datetime | None = Field(default=None, description="default: now")
    source: str = Field(default="user", min_length=1, max_length=64, pattern=r"^[\w.:/-]+$")


class SentimentIngest(Schema):
    texts: list[TextIn] = Field(min_length=1, max_length=100)


class SentimentReadingOut(Schema):
    text: str
    symbols: list[str]
    label: str
    score: float
    probabilities: dict[str, float]
    duplicate: bool


class SentimentIngested(Schema):
    model: str
    items: list[SentimentReadingOut]


class SentimentPeriod(Schema):
    period_start: datetime
    texts: int
    score: float
    label: str
    bearish: int
    neutral: int
    bullish: int


class SentimentSummary(Schema):
    texts: int
    score: float
    label: str
    bearish: int
    neutral: int
    bullish: int


class AnalysisSentiment(SentimentSummary):
    """analyze-market's sentiment: ``GET /sentiment``'s ``overall`` for the symbol over the
    same default range, which it names."""

    start: datetime
    end: datetime


class SentimentHistory(Schema):
    symbol: str | None
    interval: str
    start: datetime
    end: datetime
    overall: SentimentSummary
    items: list[SentimentPeriod]


class ReturnInterval(Schema):
    low: float  # the 10% quantile of the return over the horizon
    high: float  # the 90% quantile


class ForecastScores(Schema):
    accuracy: float
    auc: float
    brier: float


class DirectionModelInfo(Schema):
    name: str
    trained_at: str
    training_window: dict[str, str]  # first_bar, last_bar: the open times of the bars it was fitted on
    bars: int
    features: list[str]
    test_bars: int  # walk-forward out-of-sample bars behind the scores
    folds: int


class Prediction(Schema):
    symbol: str
    timeframe: str
    horizon: int
    as_of: str  # the open time of the latest closed bar the forecast is made from
    last_close: float
    probability_up: float
    expected_return: float  # simple return over the horizon, the model's median forecast
    interval: ReturnInterval
    scores: ForecastScores  # the model's out-of-sample (walk-forward) scores
    baselines: dict[str, ForecastScores]  # the same for the linear model and the naive always_up / last_direction
    beats_baselines: dict[str, bool]  # per metric: better than both naive baselines
    model: DirectionModelInfo
