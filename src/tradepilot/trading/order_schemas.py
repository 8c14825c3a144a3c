"""Bodies of the order endpoints. Decimals are exact on input (string or JSON number) and
strings on output."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from tradepilot.core.schemas import Money, Schema

SideName = Literal["buy", "sell"]
OrderTypeName = Literal["market", "limit", "stop", "stop_limit", "take_profit", "take_profit_limit",
                        "trailing_stop"]
TimeInForceName = Literal["gtc", "ioc", "fok", "day"]
OrderStatusName = Literal["pending_new", "new", "partially_filled", "filled", "canceled", "expired", "rejected"]
ClientOrderId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,64}$")]
PositiveMoney = Annotated[Money, Field(gt=0)]


class OrderCreate(Schema):
    symbol: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)] = Field(
        description="`BASE/QUOTE` (or `BASE-QUOTE`), any case")
    side: SideName
    type: OrderTypeName
    quantity: PositiveMoney | None = Field(default=None, description="In the base asset")
    quote_quantity: PositiveMoney | None = Field(
        default=None, description="Market orders: spend (buy) or receive (sell) this much of the quote asset")
    price: PositiveMoney | None = Field(default=None, description="Limit price (limit, stop_limit, take_profit_limit)")
    stop_price: PositiveMoney | None = Field(
        default=None, description="Trigger price (stop, stop_limit, take_profit, take_profit_limit)")
    trail_amount: PositiveMoney | None = Field(default=None, description="trailing_stop: distance in quote units")
    trail_percent: PositiveMoney | None = Field(default=None, description="trailing_stop: distance in percent")
    time_in_force: TimeInForceName = Field(default="gtc", description="`day` ends at the next 00:00 UTC")
    post_only: bool = Field(default=False, description="Limit orders: rejected rather than take liquidity")
    reduce_only: bool = False
    client_order_id: ClientOrderId | None = Field(
        default=None, description="Your id for the order, unique per account forever (generated if absent)")
    account_id: uuid.UUID | None = Field(default=None, description="Default: your default paper account")


class OrderOut(Schema):
    id: uuid.UUID
    client_order_id: str
    account_id: uuid.UUID
    symbol: str
    side: SideName
    type: OrderTypeName
    time_in_force: TimeInForceName
    quantity: Money | None
    quote_quantity: Money | None
    price: Money | None
    stop_price: Money | None = Field(description="The trigger level (a trailing stop's current one)")
    trail_amount: Money | None
    trail_percent: Money | None
    post_only: bool
    reduce_only: bool
    status: OrderStatusName
    filled_quantity: Money
    filled_quote_quantity: Money = Field(description="Σ price × quantity of the fills")
    average_fill_price: Money | None
    fees: Money
    fee_asset: str
    reserved: Money = Field(description="Still locked for this order")
    reserved_asset: str
    revision: int
    reject_code: str | None
    reject_reason: str | None
    cancel_reason: str | None
    venue: str = Field(description="The market-data venue whose book and trades fill the order")
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, payload: dict[str, Any]) -> OrderOut:
        return cls.model_validate(payload)


class OrderEventOut(Schema):
    seq: int
    type: str = Field(description="received, accepted, fill, triggered, stop_moved, canceled, expired, rejected")
    status: OrderStatusName
    detail: dict[str, Any]
    created_at: datetime


class FillOut(Schema):
    id: uuid.UUID
    order_id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    side: SideName
    price: Money
    quantity: Money
    quote_quantity: Money
    fee: Money
    fee_asset: str
    liquidity: Literal["maker", "taker"]
    trade_id: str
    market_trade_id: str | None
    created_at: datetime


class PositionOut(Schema):
    id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    base_asset: str
    quote_asset: str
    quantity: Money = Field(description="Signed: positive is long")
    average_entry_price: Money | None
    mark_price: Money | None = Field(description="The symbol's last trade price")
    unrealised_pnl: Money | None
    realised_pnl: Money = Field(description="Gross, average-cost method; net = realised_pnl − fees")
    fees: Money
    exposure: Money | None = Field(description="quantity × mark price")
    opened_at: datetime | None
    updated_at: datetime
