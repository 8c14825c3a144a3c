"""The engine's order: what the user asked for plus the engine's working state.

One mutable object per open order, owned by the engine once placed (callers read it, never
write it). Amounts are ``Decimal``; statuses follow FIX (pending_new → new → partially_filled
→ filled | canceled | expired | rejected). The working state (filled amounts, priority
sequence, trigger state, trailing water mark) lives on the order itself so that a list of
open orders is all the persistence layer needs to re-arm the engine after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from tradepilot.trading.engine.amounts import EXACT, ROUND, SCALE, ZERO


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TAKE_PROFIT = "take_profit"
    TAKE_PROFIT_LIMIT = "take_profit_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    DAY = "day"  # until the next 00:00 UTC


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"  # accepted, not working yet (a bracket exit before its entry fills)
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class LegRole(StrEnum):
    ENTRY = "entry"  # a bracket's entry
    TAKE_PROFIT = "take_profit"  # a bracket's profit-taking exit
    STOP_LOSS = "stop_loss"  # a bracket's protective exit
    LEG = "leg"  # one of an OCO pair


OPEN_STATUSES = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
LIMIT_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT_LIMIT})
STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TAKE_PROFIT,
                        OrderType.TAKE_PROFIT_LIMIT})
CONDITIONAL_TYPES = STOP_TYPES | {OrderType.TRAILING_STOP}


@dataclass(slots=True)
class Order:
    """An order as the engine sees it; fields after ``post_only`` are the engine's state."""

    id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal | None = None  # base amount; None: sized by quote_quantity or by the entry
    quote_quantity: Decimal | None = None  # market orders: spend (buy) / receive (sell) at most
    price: Decimal | None = None  # limit price (limit, stop_limit, take_profit_limit)
    stop_price: Decimal | None = None  # trigger level; kept by the engine for trailing stops
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None  # in percent: Decimal("1.5") is 1.5 %
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    # -- engine state --------------------------------------------------------------------
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_quantity: Decimal = ZERO
    filled_notional: Decimal = ZERO  # Σ price × quantity of the fills, exact
    fees: Decimal = ZERO  # Σ fees, in the quote currency
    revision: int = 0  # +1 per accepted modify
    seq: int = 0  # time priority: lower is earlier; renewed when the order (re)joins a queue
    fill_count: int = 0  # numbers the fills: trade ids are "<order id>-<n>"
    triggered: bool = False  # a conditional order that has fired
    water_mark: Decimal | None = None  # trailing stop: high (sell) / low (buy) since armed
    accepted_at: datetime | None = None
    expires_at: datetime | None = None  # day orders: the next 00:00 UTC after acceptance
    group_id: str | None = None
    role: LegRole | None = None

    def __post_init__(self) -> None:
        self.side = Side(self.side)
        self.type = OrderType(self.type)
        self.time_in_force = TimeInForce(self.time_in_force)
        self.status = OrderStatus(self.status)
        if self.role is not None:
            self.role = LegRole(self.role)

    @property
    def is_buy(self) -> bool:
        return self.side == Side.BUY

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_quantity(self) -> Decimal | None:
        """Base quantity still to fill (None when the order is sized in quote currency)."""
        if self.quantity is None:
            return None
        return EXACT.subtract(self.quantity, self.filled_quantity)

    @property
    def remaining_quote(self) -> Decimal | None:
        if self.quote_quantity is None:
            return None
        return EXACT.subtract(self.quote_quantity, self.filled_notional)

    @property
    def average_price(self) -> Decimal | None:
        """Notional ÷ quantity, half-even at 18 places (``filled_notional`` is the exact figure)."""
        if not self.filled_quantity:
            return None
        return ROUND.divide(self.filled_notional, self.filled_quantity).quantize(
            SCALE, rounding=ROUND_HALF_EVEN, context=ROUND)

    @property
    def limit_price(self) -> Decimal | None:
        """The price this order works at now: its limit, or None (it would execute at market)."""
        if self.type == OrderType.LIMIT:
            return self.price
        if self.type in LIMIT_TYPES and self.triggered:
            return self.price
        return None

    @property
    def resting(self) -> bool:
        """Working as a limit order in the engine's resting book."""
        return self.limit_price is not None and self.status in (OrderStatus.NEW,
                                                                OrderStatus.PARTIALLY_FILLED)
