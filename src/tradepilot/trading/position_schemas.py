"""Bodies of the position, history and P&L endpoints (decimals: strings out, exact in)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tradepilot.core.schemas import Money, Schema
from tradepilot.trading.order_schemas import ClientOrderId, FillOut, OrderOut, OrderStatusName, PositionOut

PositiveMoney = Annotated[Money, Field(gt=0)]
UTCDay = date  # (a field named ``date`` cannot be annotated ``date`` itself)
Symbol = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]


# --- positions -----------------------------------------------------------------------------------

class ExitOut(Schema):
    order_id: uuid.UUID
    type: Literal["stop", "take_profit", "limit"] = Field(
        description="stop-loss: `stop`; take-profit: `take_profit` (market when it fires) or `limit` (rests)")
    price: Money = Field(description="The trigger (stop / take_profit) or the limit price (limit)")
    quantity: Money = Field(description="What it still sells: the position's quantity")
    status: OrderStatusName
    created_at: datetime


class PositionView(PositionOut):
    status: Literal["open", "closed"] = Field(description="`closed`: flat (quantity 0)")
    net_pnl: Money = Field(description="realised_pnl − fees")
    stop_loss: ExitOut | None
    take_profit: ExitOut | None


class PositionClose(Schema):
    quantity: PositiveMoney | None = Field(default=None, description="Part of the position; default: all of it")
    client_order_id: ClientOrderId | None = Field(default=None, description="For the closing order")


class PositionsCloseAll(Schema):
    account_id: uuid.UUID | None = Field(default=None, description="Default: all your accounts")
    symbol: Symbol | None = None


class CloseError(Schema):
    code: str
    detail: str


class CloseResult(Schema):
    position_id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    status: int = Field(description="201: closed by `order`; otherwise the error's HTTP status")
    order: OrderOut | None = None
    error: CloseError | None = None


class CloseAllOut(Schema):
    items: list[CloseResult]


class StopLossIn(Schema):
    stop_price: PositiveMoney | None = Field(
        description="Sell the whole position at market once a trade is at or below it; null removes the stop-loss")


class TakeProfitIn(Schema):
    price: PositiveMoney | None = Field(
        description="Sell the whole position once a trade is at or above it; null removes the take-profit")
    type: Literal["take_profit", "limit"] = Field(
        default="take_profit", description="`take_profit`: a market sell when it fires; `limit`: rests at the price")


# --- history -----------------------------------------------------------------------------------

class HistoryItem(OrderOut):
    fills: list[FillOut] = Field(description="The order's fills, oldest first")


# --- P&L ---------------------------------------------------------------------------------------

class PnlFigures(Schema):
    quote_asset: str
    realised_pnl: Money = Field(description="Gross, of the period's fills")
    fees: Money = Field(description="Fees of the period's fills (in the quote asset)")
    net_pnl: Money = Field(description="realised_pnl − fees")
    fills: int


class PnlTotal(PnlFigures):
    unrealised_pnl: Money | None = Field(description="Open positions now, at the last price (null: unpriced)")


class PnlSymbol(PnlTotal):
    symbol: str
    quantity: Money = Field(description="Held now")
    mark_price: Money | None


class PnlDay(PnlFigures):
    date: UTCDay = Field(description="The UTC day")


class PnlOut(Schema):
    method: Literal["average_cost"]
    fees_treatment: str
    accounts: list[uuid.UUID]
    start: datetime | None
    end: datetime | None
    as_of: datetime
    totals: list[PnlTotal] = Field(description="One per quote asset")
    by_symbol: list[PnlSymbol]
    by_day: list[PnlDay] = Field(description="Days with fills, oldest first")
    fees_in_other_assets: dict[str, Money] = Field(description="Fees not paid in the quote asset (none on paper)")
