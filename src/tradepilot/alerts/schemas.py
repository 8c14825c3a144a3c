"""Request and response bodies of /api/alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from tradepilot.core.schemas import Money, Schema

MAX_COOLDOWN = 30 * 86_400
Window = Literal["1m", "5m", "15m", "1h", "4h", "24h"]


class Repeat(Schema):
    """One-shot (default: fires once, then `triggered`) or recurring with a cool-down."""

    recurring: bool = False
    cooldown_seconds: int = Field(default=300, ge=1, le=MAX_COOLDOWN,
                                  description="Recurring: the least time between two firings")
    message: str | None = Field(default=None, max_length=500, description="Your note, shown when it fires")


class PriceAlertCreate(Repeat):
    symbol: str = Field(min_length=3, max_length=32)
    condition: Literal["above", "below", "crosses", "percent_change"]
    price: Money | None = Field(default=None, description="above / below / crosses")
    percent: Money | None = Field(default=None, description="percent_change: e.g. 5 for 5 %")
    window: Window | None = Field(default=None, description="percent_change: the window")
    direction: Literal["up", "down", "any"] = Field(default="any", description="crosses / percent_change")

    @model_validator(mode="after")
    def _shape(self) -> PriceAlertCreate:
        if self.condition == "percent_change":
            if self.percent is None or self.window is None or self.price is not None:
                raise ValueError("percent_change takes percent and window (not price)")
            if not Decimal(0) < self.percent <= Decimal(1000):
                raise ValueError("percent must be in (0, 1000]")
        else:
            if self.price is None or self.percent is not None or self.window is not None:
                raise ValueError(f"{self.condition} takes price (not percent or window)")
            if self.price <= 0:
                raise ValueError("price must be positive")
        if self.condition in ("above", "below") and self.direction != "any":
            raise ValueError("direction applies to crosses and percent_change only")
        return self


class PnlAlertCreate(Repeat):
    scope: Literal["position", "account", "daily"]
    symbol: str | None = Field(default=None, min_length=3, max_length=32, description="position: its symbol")
    account_id: uuid.UUID | None = Field(default=None, description="Default: your default account (position) "
                                                                   "or all your accounts")
    direction: Literal["above", "below"] = Field(description="Fires when the P&L is at or above / at or below")
    threshold: Money = Field(description="Quote currency (absolute) or percent; negative for a loss")
    unit: Literal["absolute", "percent"] = "absolute"

    @model_validator(mode="after")
    def _shape(self) -> PnlAlertCreate:
        if (self.scope == "position") != (self.symbol is not None):
            raise ValueError("symbol is required for a position alert, and only there")
        return self


class RiskAlertCreate(Repeat):
    measure: Literal["drawdown", "exposure", "concentration", "daily_loss_limit"]
    threshold: Money = Field(description="Percent, fires at or above: drawdown below the peak, gross exposure / "
                                         "equity, largest position / equity, today's loss / your daily loss limit")
    account_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _shape(self) -> RiskAlertCreate:
        if not Decimal(0) < self.threshold <= Decimal(10_000):
            raise ValueError("threshold must be a percent in (0, 10000]")
        return self


class StatusUpdate(Schema):
    status: Literal["active", "paused", "cancelled"]


class AlertOut(Schema):
    id: uuid.UUID
    kind: str
    condition: str
    symbol: str | None
    account_id: uuid.UUID | None
    threshold: Money
    direction: str | None
    unit: str | None
    window_seconds: int | None
    recurring: bool
    cooldown_seconds: int
    message: str | None
    status: str
    trigger_count: int
    last_triggered_at: datetime | None
    next_eligible_at: datetime | None
    created_at: datetime
    updated_at: datetime


class TriggerOut(Schema):
    id: uuid.UUID
    alert_id: uuid.UUID
    triggered_at: datetime
    value: Money
    detail: dict[str, Any]
