"""Request and response bodies of /api/strategies (and /api/ai/backtest-strategy).

``params`` stays a free JSON object here on purpose: its shape depends on ``strategy``, so it
is validated by the catalog's own parameter models (or the rule parser) in the engine, which
reports every problem with its path under ``params``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator

from tradepilot.core.schemas import Money, Schema
from tradepilot.market.service import normalize_symbol
from tradepilot.market.types import TIMEFRAMES

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
assert set(TIMEFRAMES) == set(Timeframe.__args__)  # type: ignore[attr-defined]
SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,20}[/-][A-Za-z0-9]{1,20}$"
MAX_SYMBOLS = 10


class StrategySpec(Schema):
    """What a strategy configuration is made of (create, replace, inline backtests)."""

    strategy: str = Field(min_length=1, max_length=64, description="A catalog name (`GET /api/strategies/catalog`); "
                                                                   "`rules` for a rule document")
    params: dict[str, Any] = Field(default_factory=dict, description="The strategy's parameters; for `rules`, "
                                                                     "the rule document")
    symbols: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS, description="Unified symbols, e.g. BTC/USDT")
    timeframe: Timeframe

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for raw in value:
            if not re.fullmatch(SYMBOL_PATTERN, raw):
                raise ValueError(f"{raw!r} is not a symbol like BTC/USDT")
            symbol = normalize_symbol(raw)
            if symbol in out:
                raise ValueError(f"{symbol} is listed twice")
            out.append(symbol)
        return out


class StrategyCreate(StrategySpec):
    name: str = Field(min_length=1, max_length=100)
    account_id: uuid.UUID | None = Field(None, description="One of your trading accounts, for later live runs")


class StrategyReplace(StrategyCreate):
    """``PUT`` replaces the whole configuration."""


class StrategyClone(Schema):
    name: str | None = Field(None, min_length=1, max_length=100, description="Default: `<name> (copy)`")


class StrategyOut(Schema):
    id: uuid.UUID
    name: str
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    account_id: uuid.UUID | None
    status: str
    created_at: datetime
    updated_at: datetime


class BacktestRequest(Schema):
    """The period and trading settings of one backtest. Fees default to the paper exchange's."""

    start: datetime = Field(description="First bar's open time (RFC 3339)")
    end: datetime | None = Field(None, description="Bars opening before this time; default now")
    initial_cash: Money = Field(default=Decimal(10000), description="Starting cash in the quote currency")
    maker_fee: Money | None = Field(None, description="Fraction, e.g. 0.001; default the paper exchange's")
    taker_fee: Money | None = None
    slippage: Money = Field(default=Decimal(0), description="Fraction on market and stop fills")
    volume_cap: Money | None = Field(None, description="Max fraction of a bar's volume one symbol's fills take")


class InlineBacktest(BacktestRequest):
    """``POST /api/ai/backtest-strategy``: a strategy given inline, not saved as a configuration."""

    strategy: StrategySpec


class BacktestAccepted(Schema):
    backtest_id: uuid.UUID
    job_id: uuid.UUID
    strategy_id: uuid.UUID | None
    status: str
    estimated_bars: int


class BacktestOut(Schema):
    id: uuid.UUID
    strategy_id: uuid.UUID | None
    job_id: uuid.UUID
    status: str = Field(description="queued, running, succeeded, failed, cancelled")
    progress: float | None = Field(description="0..1 from the job, while it exists")
    progress_message: str | None
    error: str | None
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    start: datetime
    end: datetime
    settings: dict[str, Any]
    bars: int | None
    summary: dict[str, Any] | None
    report: dict[str, str] | None = Field(description="URLs of the HTML and PNG report once succeeded")
    created_at: datetime
    finished_at: datetime | None


class PerformanceOut(Schema):
    strategy_id: uuid.UUID
    backtest: BacktestOut | None = Field(description="The latest succeeded backtest, or null")
