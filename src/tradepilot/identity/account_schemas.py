"""Bodies of the account endpoints: settings, API keys, limits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field, IPvAnyNetwork, NonNegativeInt

from tradepilot.core.schemas import Money, Schema

Scope = Literal["read", "trade", "admin"]
LimitName = Literal["requests_per_minute", "open_orders", "running_strategies", "alerts", "api_keys",
                    "ai_calls_per_day", "backtest_bars", "websocket_subscriptions", "trading_accounts",
                    "concurrent_backtests", "optimization_trials"]


class RiskSettings(Schema):
    """Your own trading risk limits, in each order's quote currency; unset means no limit of that kind.

    Plans set no amounts, so any value tightens; the checks run before every new order
    (docs/orders.md, "risk checks")."""

    max_order_notional: Money | None = Field(default=None, gt=0, description="Largest value of one order")
    max_position_notional: Money | None = Field(default=None, gt=0,
                                                description="Largest value of one symbol's position after a buy")
    daily_loss_limit: Money | None = Field(default=None, gt=0, description="Realised loss plus fees since 00:00 "
                                           "UTC at which new orders stop until the next UTC day (kill switch)")


class UserSettings(Schema):
    theme: Literal["system", "light", "dark"] = "system"
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    quote_currency: str = Field(default="USDT", pattern=r"^[A-Z0-9]{2,10}$")
    confirm_orders: bool = True
    ip_allowlist: list[IPvAnyNetwork] = Field(default_factory=list, max_length=50,
                                              description="If not empty, the account answers only these networks")
    limits: dict[LimitName, NonNegativeInt] = Field(default_factory=dict,
                                                    description="Your own limits; they can only tighten your plan's")
    risk: RiskSettings = Field(default_factory=RiskSettings)


class UserSettingsUpdate(Schema):
    """Only the fields sent are changed; unknown keys are refused with 422."""

    theme: Literal["system", "light", "dark"] | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    quote_currency: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,10}$")
    confirm_orders: bool | None = None
    ip_allowlist: list[IPvAnyNetwork] | None = Field(default=None, max_length=50)
    limits: dict[LimitName, NonNegativeInt] | None = None
    risk: RiskSettings | None = Field(default=None, description="Replaces all risk limits (omit a field: no limit)")


class ApiKeyCreate(Schema):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1)
    allowed_ips: list[IPvAnyNetwork] = Field(default_factory=list, max_length=50)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyInfo(Schema):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The public part of the key, to recognise it")
    scopes: list[str]
    allowed_ips: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyInfo):
    key: str = Field(description="The full key. It is shown once and cannot be retrieved again.")


class LimitsView(Schema):
    plan: str
    limits: dict[str, int]
    plan_limits: dict[str, int]
    usage: dict[str, int]
    resets_at: datetime = Field(description="When the per-day limits reset (next UTC midnight)")
