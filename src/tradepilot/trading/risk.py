"""Pre-trade risk checks: the last line before an order reaches a venue.

Pure functions over a snapshot of the account and the market, so the order service can run
them inside the transaction that reserves the funds (the snapshot is read under that
transaction's lock; two orders never pass the check with the same dollar). Each refusal is
a 422 with a stable ``code`` and the figures that explain it.

Spot only in this release: no shorts, so selling more than the free holding is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tradepilot.core.errors import Unprocessable
from tradepilot.core.money import EXACT, to_plain_string

DEFAULT_PRICE_COLLAR = Decimal("0.10")  # a limit more than 10% through the market is a fat finger


class RiskRejected(Unprocessable):
    """The order would break a risk limit; ``code`` says which."""


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Effective limits of one account: the plan's, tightened by the user's own (never loosened)."""

    max_open_orders: int
    max_order_notional: Decimal | None = None  # in the quote currency
    max_position_notional: Decimal | None = None  # per symbol, valued at the market
    daily_loss_limit: Decimal | None = None  # realised loss + fees over the UTC day; then a kill switch
    price_collar: Decimal = DEFAULT_PRICE_COLLAR


@dataclass(frozen=True, slots=True)
class OrderIntent:
    side: str  # buy | sell
    type: str
    quantity: Decimal | None  # base units (None: a quote_quantity market buy)
    limit_price: Decimal | None = None  # limit / stop_limit / take_profit_limit price
    quote_quantity: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    free_quote: Decimal
    free_base: Decimal
    position: Decimal  # base held (free + locked), signed for later margin accounts
    open_orders: int
    realised_today: Decimal  # realised P&L minus fees since 00:00 UTC; negative is a loss
    trading_halted: bool = False  # the platform halt or the user's panic button


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    last: Decimal | None
    best_bid: Decimal | None
    best_ask: Decimal | None


def _s(value: Decimal) -> str:
    return to_plain_string(value)


def check_pre_trade(order: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits,
                    *, cost: Decimal) -> None:
    """Raise :class:`RiskRejected` if the order may not go to the venue.

    ``cost`` is what a buy would spend in the quote currency, fees included (for a market
    buy, the caller's walk of the current book): it is checked against buying power and the
    notional limits. Sells are checked against the free holding.
    """
    if account.trading_halted:
        raise RiskRejected("Trading is halted on this account.", code="trading_halted")
    if limits.daily_loss_limit is not None and -account.realised_today >= limits.daily_loss_limit:
        raise RiskRejected(
            f"Today's loss {_s(-account.realised_today)} reached the daily limit {_s(limits.daily_loss_limit)}; "
            "new orders are refused until 00:00 UTC.", code="daily_loss_limit_reached",
            extra={"loss_today": _s(-account.realised_today), "daily_loss_limit": _s(limits.daily_loss_limit)})
    if account.open_orders >= limits.max_open_orders:
        raise RiskRejected(f"You already have {account.open_orders} open orders, the limit of your plan.",
                           code="open_orders_limit", extra={"limit": limits.max_open_orders})
    _check_collar(order, market, limits)
    notional = cost if order.side == "buy" else _sell_value(order, market)
    if limits.max_order_notional is not None and notional is not None and notional > limits.max_order_notional:
        raise RiskRejected(f"Order value {_s(notional)} is above your limit {_s(limits.max_order_notional)}.",
                           code="order_notional_above_limit",
                           extra={"notional": _s(notional), "limit": _s(limits.max_order_notional)})
    if order.side == "buy":
        _check_buy(order, account, market, limits, cost)
    else:
        _check_sell(order, account)


def _check_buy(order: OrderIntent, account: AccountSnapshot, market: MarketSnapshot, limits: RiskLimits,
               cost: Decimal) -> None:
    if order.reduce_only:
        raise RiskRejected("A reduce-only buy would open a short position, which spot accounts cannot hold.",
                           code="reduce_only_would_increase")
    if cost > account.free_quote:
        raise RiskRejected(f"This order needs {_s(cost)} but {_s(account.free_quote)} is available.",
                           code="insufficient_funds", extra={"required": _s(cost), "available": _s(account.free_quote)})
    mark = market.last or market.best_ask
    if limits.max_position_notional is not None and mark is not None and order.quantity is not None:
        after = (account.position + order.quantity) * mark
        if after > limits.max_position_notional:
            raise RiskRejected(f"The position would be worth {_s(after)}, above your limit "
                               f"{_s(limits.max_position_notional)} per symbol.", code="position_above_limit",
                               extra={"position_value": _s(after), "limit": _s(limits.max_position_notional)})


def _check_sell(order: OrderIntent, account: AccountSnapshot) -> None:
    quantity = order.quantity or Decimal(0)
    if quantity > account.free_base:
        raise RiskRejected(f"You can sell at most {_s(account.free_base)}; spot accounts cannot go short.",
                           code="insufficient_position",
                           extra={"requested": _s(quantity), "available": _s(account.free_base)})
    if order.reduce_only and quantity > account.position:
        raise RiskRejected("A reduce-only order may not exceed the position.", code="reduce_only_would_increase")


def _check_collar(order: OrderIntent, market: MarketSnapshot, limits: RiskLimits) -> None:
    """A limit price far *through* the market (a buy far above it, a sell far below) is refused."""
    if order.limit_price is None or market.last is None:
        return
    if order.side == "buy":
        bound = EXACT.multiply(market.last, 1 + limits.price_collar)
        breached = order.limit_price > bound
    else:
        bound = EXACT.multiply(market.last, 1 - limits.price_collar)
        breached = order.limit_price < bound
    if breached:
        raise RiskRejected(
            f"Limit price {_s(order.limit_price)} is more than {_s(limits.price_collar * 100)}% through the market "
            f"({_s(market.last)}).", code="price_outside_collar",
            extra={"limit_price": _s(order.limit_price), "market": _s(market.last), "bound": _s(bound)})


def _sell_value(order: OrderIntent, market: MarketSnapshot) -> Decimal | None:
    price = order.limit_price or market.best_bid or market.last
    if price is None or order.quantity is None:
        return None
    return order.quantity * price
