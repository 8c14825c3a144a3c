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


class ExitLeg(Schema):
    """An attached exit (bracket) or one leg of an OCO; its type follows from the fields given.

    ``take_profit``: ``price`` → limit; ``stop_price`` → take_profit; both → take_profit_limit.
    ``stop_loss``: ``stop_price`` → stop; ``stop_price`` + ``price`` → stop_limit;
    ``trail_amount`` or ``trail_percent`` → trailing_stop.
    """

    price: PositiveMoney | None = Field(default=None, description="Limit price")
    stop_price: PositiveMoney | None = Field(default=None, description="Trigger price")
    trail_amount: PositiveMoney | None = Field(default=None, description="stop_loss only: a trailing stop")
    trail_percent: PositiveMoney | None = Field(default=None, description="stop_loss only: a trailing stop")
    time_in_force: Literal["gtc", "day"] | None = Field(
        default=None, description="Default: the entry's when it is `day`, else `gtc`")
    client_order_id: ClientOrderId | None = Field(default=None, description="Generated if absent")


class OrderCreate(Schema):
    symbol: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)] = Field(
        description="`BASE/QUOTE` (or `BASE-QUOTE`), any case")
    side: SideName
    type: Literal["market", "limit", "stop", "stop_limit", "take_profit", "take_profit_limit", "trailing_stop",
                  "oco"] = Field(
        description="`oco`: a take_profit and a stop_loss leg, one cancelling the other")
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
    take_profit: ExitLeg | None = Field(
        default=None, description="Bracket exit (or an OCO's limit leg), armed when the entry fills")
    stop_loss: ExitLeg | None = Field(
        default=None, description="Bracket exit (or an OCO's stop leg), armed when the entry fills")

    @property
    def is_group(self) -> bool:
        return self.type == "oco" or self.take_profit is not None or self.stop_loss is not None


SourceName = Literal["platform", "external"]
SOURCE_HELP = ("platform: placed through TradePilot; external: found on a live account's exchange by reconciliation "
               "(placed by hand or by another program) — it moves balances and positions, TradePilot never cancels it")


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
    group_id: uuid.UUID | None = Field(default=None, description="The bracket or OCO the order belongs to")
    group_kind: Literal["bracket", "oco"] | None = None
    group_role: Literal["entry", "take_profit", "stop_loss"] | None = None
    source: SourceName = Field(default="platform", description=SOURCE_HELP)
    strategy_id: uuid.UUID | None = Field(default=None, description="The strategy whose live run placed it")
    strategy_run_id: uuid.UUID | None = Field(default=None, description="That live run (GET /api/strategies/runs)")
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    legs: list[OrderOut] | None = Field(
        default=None, description="Placing a bracket or OCO: the group's other orders (take-profit, then stop-loss)")

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
    realised_pnl: Money | None = Field(
        default=None, description="Gross P&L this fill realised on its position (average cost; 0 for a buy)")
    source: SourceName = Field(default="platform", description="Its order's source")
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


# --- modify, bulk, panic ---------------------------------------------------------------------------

class OrderModify(Schema):
    """``PUT /orders/{id}``: what changes (at least one), and optionally the revision you saw."""

    price: PositiveMoney | None = Field(default=None, description="New limit price")
    quantity: PositiveMoney | None = Field(default=None, description="New total quantity (above what is filled)")
    stop_price: PositiveMoney | None = Field(default=None, description="New trigger price (not yet triggered)")
    trail_amount: PositiveMoney | None = Field(default=None, description="A trailing stop's new trail (replaces it)")
    trail_percent: PositiveMoney | None = Field(default=None, description="A trailing stop's new trail in percent")
    revision: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Optimistic concurrency: refused (409 revision_mismatch) unless current")


class BulkOrdersIn(Schema):
    orders: list[Annotated[OrderCreate | dict[str, Any], Field(union_mode="left_to_right")]] = Field(
        min_length=1, description="1 to 50 order bodies, each as for `POST /api/trading/orders` (an invalid one "
                                  "fails alone, with its own 422, unless `atomic`)")
    atomic: bool = Field(default=False, description="All or nothing, in one transaction")


class BulkItemOut(Schema):
    index: int
    status_code: int = Field(description="201 placed; else the status `POST /orders` would have answered")
    order: OrderOut | None = None
    error: dict[str, Any] | None = Field(default=None, description="The problem+json members of the refusal")


class BulkOrdersOut(Schema):
    atomic: bool
    placed: int
    failed: int
    results: list[BulkItemOut]


class CancelOutcomeOut(Schema):
    order_id: uuid.UUID
    status: str = Field(description="The order's status afterwards (filled: the exchange had filled it)")
    error: dict[str, Any] | None = Field(default=None, description="The exchange's error (problem+json); "
                                                                   "the order is still open")


class BulkCancelOut(Schema):
    canceled: list[uuid.UUID]
    count: int
    not_canceled: list[CancelOutcomeOut] = Field(
        default_factory=list, description="Live accounts: orders the exchange did not cancel, one by one")


class PanicIn(Schema):
    close_positions: bool = Field(default=False, description="Also sell every long position at market")
    account_id: uuid.UUID | None = Field(default=None, description="One account; default: all of yours")


class PanicCloseOut(Schema):
    account_id: uuid.UUID
    symbol: str
    quantity: Money
    status_code: int
    order: OrderOut | None = None
    error: dict[str, Any] | None = None


class PanicOut(Schema):
    canceled: list[uuid.UUID]
    canceled_count: int
    not_canceled: list[CancelOutcomeOut] = Field(
        default_factory=list, description="Live accounts: orders the exchange did not cancel, one by one")
    closes: list[PanicCloseOut] = Field(description="One per long position, when close_positions")
    trading_halted: bool = Field(description="The platform halt was on (closes went through as reduce-only)")
