"""Bodies of ``POST /api/strategies/{id}/start`` and the run views."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from tradepilot.core.schemas import Money, Schema
from tradepilot.market.service import normalize_symbol
from tradepilot.strategies.schemas import MAX_SYMBOLS, SYMBOL_PATTERN, Timeframe


class RunStart(Schema):
    """Everything optional: the configuration's account (else your default paper account),
    symbols and timeframe."""

    account_id: uuid.UUID | None = Field(None, description="One of your paper or live accounts")
    symbols: list[str] | None = Field(None, min_length=1, max_length=MAX_SYMBOLS)
    timeframe: Timeframe | None = None

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out: list[str] = []
        for raw in value:
            if not re.fullmatch(SYMBOL_PATTERN, raw):
                raise ValueError(f"{raw!r} is not a symbol like BTC/USDT")
            if normalize_symbol(raw) not in out:
                out.append(normalize_symbol(raw))
        return out


class RunPnl(Schema):
    """The run's own trades, marked to the last price: quote currency, exact strings."""

    realised: Money = Field(description="Realised on the run's sells (average cost), before fees")
    fees: Money = Field(description="Fees of the run's fills, in the quote asset")
    unrealised: Money | None = Field(description="The run's net position × (last price − its cost); null without a price")
    total: Money | None = Field(description="realised − fees + unrealised")
    fills: int


class RunOut(Schema):
    id: uuid.UUID
    strategy_id: uuid.UUID
    account_id: uuid.UUID
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    status: str = Field(description="running, stopped, failed, suspended")
    stop_reason: str | None = Field(description="user, panic, suspended, deletion_requested, error")
    error: str | None
    last_bar_at: datetime | None = Field(description="Open time of the last bar the strategy processed")
    orders_placed: int
    orders_rejected: int
    pnl: RunPnl | None = None
    created_at: datetime
    started_at: datetime
    stopped_at: datetime | None
    updated_at: datetime
