"""Bodies of ``POST /api/portfolio/rebalance`` and ``POST /api/portfolio/optimize``.

Rebalance weights and amounts are exact decimals (string or JSON number in, strings out);
the optimiser's figures are floats (they are statistics, not money).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from tradepilot.core.schemas import Money, Schema
from tradepilot.portfolio.optimize import RISK_TOLERANCE_METHODS, Method, RiskTolerance
from tradepilot.trading.order_schemas import OrderOut

AssetName = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9]{1,16}$")]
Weight = Annotated[Money, Field(description="A fraction of the portfolio, 0..1")]


# --- rebalance -------------------------------------------------------------------------------------

class RebalanceIn(Schema):
    account_id: uuid.UUID | None = Field(default=None, description="Default: your default paper account")
    target_allocation: dict[AssetName, Weight] = Field(
        description="Asset → weight, the quote (cash) asset included; non-negative, summing to 1 (within 1e-9). "
                    "A held asset left out is sold (weight 0).", examples=[{"BTC": "0.5", "ETH": "0.2", "USDT": "0.3"}])
    tolerance: Annotated[Money, Field(ge=0, lt=1)] = Field(
        default=Decimal("0.01"), description="Absolute weight band: nothing is traded while every weight is within it")
    dry_run: bool = Field(default=True, description="true: only the plan; false: place the orders (needs `trade`)")


class AssetAllocationOut(Schema):
    asset: str
    quantity: Money = Field(description="Free quantity now")
    price: Money = Field(description="Mark price in the quote currency (the last trade)")
    value: Money
    weight: Money = Field(description="Of the total value now (12 places)")
    target_weight: Money
    projected_quantity: Money = Field(description="After the planned orders, at the estimated prices")
    projected_weight: Money = Field(description="After the planned orders (12 places)")


class SkippedTradeOut(Schema):
    asset: str
    symbol: str
    side: str
    quantity: Money
    notional: Money
    reason: str = Field(description="below_min_quantity, below_min_notional, instrument_halted")


class RebalanceOrderOut(Schema):
    symbol: str
    side: str
    type: str = "market"
    quantity: Money
    estimated_price: Money = Field(description="Best bid (sell) or ask (buy) when planned")
    estimated_notional: Money
    estimated_fee: Money
    status_code: int | None = Field(default=None, description="Executed: 201 placed, else the error's status")
    order: OrderOut | None = None
    error: dict[str, Any] | None = Field(default=None, description="Executed and refused: the problem+json body")


class RebalanceOut(Schema):
    account_id: uuid.UUID
    dry_run: bool
    executed: bool = Field(description="Orders were placed (dry_run false and something to trade)")
    currency: str
    total_value: Money
    tolerance: Money
    fee_rate: Money = Field(description="The taker fee rate the estimates use")
    needs_rebalance: bool = Field(description="Some weight was outside its band")
    within_tolerance: bool = Field(description="The projected weights are all within the band")
    cash_after: Money = Field(description="Estimated quote left after the orders (never negative)")
    assets: list[AssetAllocationOut]
    orders: list[RebalanceOrderOut] = Field(description="Sells first, then buys")
    skipped: list[SkippedTradeOut]
    ignored: list[str] = Field(description="Held assets without a market in the quote currency: left alone")
    as_of: datetime


# --- optimize --------------------------------------------------------------------------------------

class BoundsIn(Schema):
    min: float = Field(default=0.0, ge=0, le=1)
    max: float = Field(default=1.0, ge=0, le=1)


class OptimizeIn(Schema):
    symbols: Annotated[list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]],
                       Field(min_length=2, max_length=30)] = Field(examples=[["BTC/USDT", "ETH/USDT", "SOL/USDT"]])
    method: Method | None = Field(default=None, description="Give `method` or `risk_tolerance`, not both")
    risk_tolerance: RiskTolerance | None = Field(
        default=None, description="conservative → min_volatility, moderate → risk_parity, aggressive → max_sharpe")
    target_return: float | None = Field(default=None, ge=-1, le=100,
                                        description="efficient_return: the annual expected return to reach")
    risk_free_rate: float = Field(default=0.0, ge=-1, le=1, description="Annual, for the Sharpe ratio")
    bounds: BoundsIn | dict[str, BoundsIn] | None = Field(
        default=None, description="One {min, max} for every symbol, or one per symbol (others long-only 0..1)")
    lookback_days: int = Field(default=365, ge=31, le=3650, description="Daily closes up to the last full UTC day")

    @model_validator(mode="after")
    def _one_method(self) -> OptimizeIn:
        if (self.method is None) == (self.risk_tolerance is None):
            raise ValueError("give exactly one of method and risk_tolerance")
        if self.resolved_method() == Method.EFFICIENT_RETURN and self.target_return is None:
            raise ValueError("efficient_return needs target_return")
        return self

    def resolved_method(self) -> Method:
        return self.method if self.method is not None else RISK_TOLERANCE_METHODS[self.risk_tolerance]  # type: ignore[index]


class OptimizeInputsOut(Schema):
    symbols: list[str]
    timeframe: str = "1d"
    start: datetime = Field(description="First close used")
    end: datetime = Field(description="Last close used")
    observations: int = Field(description="Daily returns (aligned days − 1)")
    lookback_days: int


class OptimizeOut(Schema):
    method: Method
    risk_tolerance: RiskTolerance | None
    weights: dict[str, float] = Field(description="Symbol → weight; within the bounds, summing to 1")
    target_allocation: dict[str, Money] | None = Field(
        description="Base asset → weight rounded to 8 places, summing exactly to 1: a rebalance target "
                    "(null when the symbols do not share one quote currency)")
    expected_return: float = Field(description="Annual: wᵀμ")
    volatility: float = Field(description="Annual: sqrt(wᵀΣw)")
    sharpe_ratio: float | None = Field(description="(expected_return − risk_free_rate) / volatility")
    risk_free_rate: float
    target_return: float | None
    bounds: dict[str, tuple[float, float]]
    inputs: OptimizeInputsOut
    conventions: dict[str, Any]
