"""Is an order well-formed for its type? (Instrument filters and balances are the caller's.)

Returns a stable rejection code and a human detail, or None. The service validates first and
answers 422; these checks make the engine safe on its own, so that a malformed order can never
reach a book.
"""

from __future__ import annotations

from decimal import Decimal

from tradepilot.trading.engine.orders import (
    LIMIT_TYPES,
    STOP_TYPES,
    LegRole,
    Order,
    OrderType,
    TimeInForce,
)

Problem = tuple[str, str]


def _positive(value: Decimal | None) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0


def check_order(order: Order, *, sized_by_entry: bool = False) -> Problem | None:
    """``sized_by_entry``: a bracket exit, whose quantity comes from its entry's fills."""
    kind = order.type
    if sized_by_entry:
        if order.quantity is not None or order.quote_quantity is not None:
            return "leg_quantity_not_allowed", "a bracket exit is sized by its entry's fills"
    elif order.quote_quantity is not None:
        if order.quantity is not None:
            return "invalid_quantity", "give quantity or quote_quantity, not both"
        if kind != OrderType.MARKET:
            return "quote_quantity_requires_market", "quote_quantity is for market orders"
        if not _positive(order.quote_quantity):
            return "invalid_quantity", "quote_quantity must be a positive decimal"
        if order.time_in_force == TimeInForce.FOK:
            return "invalid_time_in_force", "fok cannot be exact for an order sized in quote"
    elif not _positive(order.quantity):
        return "invalid_quantity", "quantity must be a positive decimal"

    if kind in LIMIT_TYPES:
        if not _positive(order.price):
            return "price_required", f"a {kind} order needs a positive price"
    elif order.price is not None:
        return "price_not_allowed", f"a {kind} order takes no price"

    if kind in STOP_TYPES:
        if not _positive(order.stop_price):
            return "stop_price_required", f"a {kind} order needs a positive stop_price"
    elif order.stop_price is not None:
        return "stop_price_not_allowed", f"a {kind} order takes no stop_price"

    if kind == OrderType.TRAILING_STOP:
        amount, percent = order.trail_amount, order.trail_percent
        if (amount is None) == (percent is None):
            return "invalid_trail", "give exactly one of trail_amount and trail_percent"
        if not _positive(amount if amount is not None else percent):
            return "invalid_trail", "the trail must be a positive decimal"
        if percent is not None and percent >= 100:
            return "invalid_trail", "trail_percent must be below 100"
    elif order.trail_amount is not None or order.trail_percent is not None:
        return "trail_not_allowed", f"a {kind} order takes no trail"

    if order.post_only:
        if kind != OrderType.LIMIT:
            return "invalid_post_only", "post_only is for limit orders"
        if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return "invalid_post_only", "a post-only order must be able to rest (gtc or day)"
    return None


def check_modify(order: Order, price: Decimal | None, quantity: Decimal | None,
                 stop_price: Decimal | None, trail_amount: Decimal | None = None,
                 trail_percent: Decimal | None = None) -> Problem | None:
    if price is None and quantity is None and stop_price is None and trail_amount is None \
            and trail_percent is None:
        return "nothing_to_modify", "give price, quantity, stop_price or a trail"
    for name, value in (("price", price), ("quantity", quantity), ("stop_price", stop_price)):
        if value is not None and not _positive(value):
            return "invalid_" + name, f"{name} must be a positive decimal"
    if trail_amount is not None or trail_percent is not None:
        if order.type != OrderType.TRAILING_STOP:
            return "trail_not_allowed", f"a {order.type} order has no trail"
        if trail_amount is not None and trail_percent is not None:
            return "invalid_trail", "give one of trail_amount and trail_percent"
        trail = trail_amount if trail_amount is not None else trail_percent
        if not _positive(trail) or (trail_percent is not None and trail_percent >= 100):
            return "invalid_trail", "the trail must be a positive decimal (a percentage below 100)"
        if order.triggered:
            return "already_triggered", "the order has already triggered"
    if price is not None and order.type not in LIMIT_TYPES:
        return "price_not_allowed", f"a {order.type} order has no limit price"
    if stop_price is not None:
        if order.type not in STOP_TYPES:
            return "stop_price_not_allowed", f"a {order.type} order has no modifiable stop_price"
        if order.triggered:
            return "already_triggered", "the order has already triggered"
    if quantity is not None:
        if order.quote_quantity is not None:
            return "quantity_not_allowed", "the order is sized in quote currency"
        if order.role in (LegRole.TAKE_PROFIT, LegRole.STOP_LOSS):
            return "sized_by_entry", "a bracket exit is sized by its entry's fills"
        if quantity <= order.filled_quantity:
            return "quantity_below_filled", "the new quantity must exceed the filled quantity"
    return None


def check_leg(leg: Order, anchor: Order, *, same_side: bool) -> Problem | None:
    """A group member against its anchor (the entry, or the first OCO leg)."""
    if leg.account_id != anchor.account_id or leg.symbol != anchor.symbol:
        return "group_mismatch", "the orders of a group share one account and one symbol"
    if (leg.side == anchor.side) != same_side:
        return "group_mismatch", ("OCO legs are on one side" if same_side
                                  else "bracket exits are on the entry's other side")
    if leg.type == OrderType.MARKET or leg.quote_quantity is not None:
        return "invalid_leg_type", "a group leg must be able to wait (no market orders)"
    if leg.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
        return "invalid_time_in_force", "a group leg must be able to wait (gtc or day)"
    if leg is not anchor and not same_side and leg.post_only:
        return "invalid_post_only", "a bracket exit cannot be post-only"
    return None
