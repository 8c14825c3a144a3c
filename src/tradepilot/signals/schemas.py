"""Request and response bodies of /api/signals and POST /api/ai/generate-signals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from tradepilot.core.schemas import Money, Schema
from tradepilot.market.schemas import Timeframe

MAX_HORIZON = 500


class SignalCreate(Schema):
    """A signal of your own (``POST /api/signals``) or from your webhook (TradingView alerts)."""

    symbol: str = Field(min_length=3, max_length=32, description="BTC/USDT or BTC-USDT")
    side: Literal["buy", "sell"]
    strength: float = Field(default=1.0, ge=0, le=1, description="conviction, 0..1")
    entry: Money | None = Field(default=None, description="the price to enter at; omitted: at the market "
                                                          "(the next bar's open)")
    stop_loss: Money | None = None
    take_profit: Money | None = None
    timeframe: Timeframe = "1h"
    horizon: int = Field(default=24, ge=1, le=MAX_HORIZON, description="bars of the timeframe the idea is for")
    expires_at: datetime | None = Field(default=None, description="default: one horizon from now")
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _prices(self) -> SignalCreate:
        for name in ("entry", "stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        buy = self.side == "buy"
        if self.stop_loss is not None and self.take_profit is not None and (
                (self.stop_loss >= self.take_profit) if buy else (self.stop_loss <= self.take_profit)):
            raise ValueError("a buy's stop_loss must be below its take_profit (a sell's above)")
        if self.entry is not None:
            if self.stop_loss is not None and ((self.stop_loss >= self.entry) if buy else (self.stop_loss <= self.entry)):
                raise ValueError("a buy's stop_loss must be below its entry (a sell's above)")
            if self.take_profit is not None and ((self.take_profit <= self.entry) if buy
                                                 else (self.take_profit >= self.entry)):
                raise ValueError("a buy's take_profit must be above its entry (a sell's below)")
        return self


class StatusUpdate(Schema):
    status: Literal["cancelled"] = Field(description="the one change you make; the market makes the others")


class SignalOut(Schema):
    id: uuid.UUID
    symbol: str
    side: str
    strength: float
    entry: Money | None
    stop_loss: Money | None
    take_profit: Money | None
    timeframe: str
    horizon: int
    source: str
    reason: str
    details: dict[str, Any]
    status: str
    expires_at: datetime
    triggered_at: datetime | None
    trigger_price: Money | None
    outcome: str | None
    outcome_at: datetime | None
    exit_price: Money | None
    horizon_return: Money | None
    evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Figures(Schema):
    count: int
    hit_rate: float | None
    mean_return: float | None
    median_return: float | None
    outcomes: dict[str, int] | None = None
    beats_baseline: dict[str, bool] | None = None  # by source: hit rate and mean return above the baseline's


class Baseline(Schema):
    method: str
    seed: int
    samples_per_signal: int
    overall: Figures
    by_source: dict[str, Figures]


class PerformanceOut(Schema):
    overall: Figures
    by_source: dict[str, Figures]
    baseline: Baseline
    statuses: dict[str, int]  # every one of your signals (in the filter) by status
    awaiting_horizon: int  # triggered, horizon not passed yet: not scored


class WebhookOut(Schema):
    path: str = Field(description="the URL path without its secret: …/<key>_<secret>")
    created_at: datetime
    rotated_at: datetime
    last_used_at: datetime | None


class WebhookSecretOut(WebhookOut):
    url_path: str = Field(description="POST your JSON here; shown once: only a hash of the secret is kept")
    secret: str


class GenerateSignals(Schema):
    source: Literal["model", "strategy"]
    symbols: list[str] = Field(min_length=1, max_length=10)
    timeframe: Timeframe = "1h"
    horizon: int = Field(default=1, ge=1, le=MAX_HORIZON, description="model: the trained horizon, in bars")
    strategy: str | None = Field(default=None, max_length=64, description="source strategy: a catalog name")
    params: dict[str, Any] = Field(default_factory=dict, description="source strategy: its parameters")
    min_strength: float = Field(default=0.0, ge=0, le=1, description="model: keep only signals this strong")
    expires_in_bars: int = Field(default=1, ge=1, le=MAX_HORIZON, description="how long the entry stays valid")

    @model_validator(mode="after")
    def _shape(self) -> GenerateSignals:
        if (self.source == "strategy") != (self.strategy is not None):
            raise ValueError("strategy is required with source 'strategy', and only there")
        if self.source == "model" and self.params:
            raise ValueError("params apply to source 'strategy' only")
        return self


class Skipped(Schema):
    symbol: str
    reason: str


class GeneratedSignals(Schema):
    items: list[SignalOut]
    skipped: list[Skipped]
