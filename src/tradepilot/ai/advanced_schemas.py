"""Bodies of ``POST /api/ai/optimize-portfolio``, ``/generate-strategy`` and ``/risk-assessment``."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from tradepilot.core.schemas import Money, Schema
from tradepilot.market.schemas import Timeframe
from tradepilot.portfolio.schemas import OptimizeIn, OptimizeOut, RebalanceOut


class AiOptimizeIn(OptimizeIn):
    account_id: uuid.UUID | None = Field(default=None, description="Default: your default paper account")
    cash_weight: Annotated[Money, Field(ge=0, lt=1)] = Field(
        default=Decimal(0), description="Share kept in the quote currency; the optimised weights share the rest")
    tolerance: Annotated[Money, Field(ge=0, lt=1)] = Field(
        default=Decimal("0.01"), description="Rebalance band: nothing is traded while every weight is within it")
    execute: bool = Field(default=False, description="true: place the rebalancing orders (needs `trade`)")


class AiOptimizeOut(Schema):
    optimization: OptimizeOut
    target_allocation: dict[str, Money] = Field(description="Asset → weight the rebalance aims at, cash included")
    rebalance: RebalanceOut


class GenerateStrategyIn(Schema):
    symbol: str = Field(min_length=3, max_length=32, examples=["BTC/USDT"])
    timeframe: Timeframe = "1h"
    bars: int = Field(default=2000, ge=1500, le=20000, description="newest closed bars: fit window, then test window")


class WindowOut(Schema):
    start: str | None
    end: str | None
    bars: int


class GeneratedStrategyOut(Schema):
    symbol: str
    timeframe: str
    regime: str = Field(description="At the fit window's end: trending, ranging or volatile")
    regime_probabilities: dict[str, float]
    family: str = Field(description="trend_following, mean_reversion or volatility_breakout")
    why: str
    strategy: str = Field(description="A registered strategy (GET /api/strategies/catalog)")
    params: dict[str, Any] = Field(description="Ready for POST /api/strategies")
    fit_window: WindowOut
    test_window: WindowOut = Field(description="After the fit window; never seen while choosing")
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any] = Field(description="The backtest on the test window, buy_and_hold inside")
    candidates_tried: int


class RiskAssessmentIn(Schema):
    account_id: uuid.UUID | None = Field(default=None, description="Whose holdings (default: your default account)")
    weights: dict[Annotated[str, Field(min_length=3, max_length=32)], Annotated[float, Field(ge=0, le=1)]] | None = (
        Field(default=None, max_length=30, description="Symbol → weight; default: the account's holdings now"))
    lookback_days: int = Field(default=365, ge=31, le=3650)
    level: float = Field(default=0.95, gt=0.5, lt=1, description="VaR / CVaR confidence")


class RiskAssessmentOut(Schema):
    source: str = Field(description="holdings or given")
    start: datetime
    end: datetime
    level: float
    observations: int
    weights: dict[str, float]
    value_at_risk: dict[str, float | None]
    conditional_value_at_risk: dict[str, float | None]
    volatility: float | None
    concentration: dict[str, Any]
    correlation: dict[str, Any]
    drawdown: dict[str, float | None]
    conventions: dict[str, Any]
