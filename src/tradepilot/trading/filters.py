"""Instrument filters (tick size, step size, min notional): checked, never silently rounded.

A real venue rejects a price off the tick grid; so do we, with a 422 whose ``code`` names the
filter and whose body carries the nearest valid values below and above, so a client can fix
the order without guessing. Only the caller decides to round.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from tradepilot.core.errors import Unprocessable
from tradepilot.core.money import EXACT, to_plain_string
from tradepilot.market.types import Instrument


class FilterViolation(Unprocessable):
    """An order breaks one of the instrument's filters; ``extra`` says how to fix it."""


def grid_neighbours(value: Decimal, step: Decimal) -> tuple[Decimal, Decimal]:
    """The nearest multiples of ``step`` at or below and at or above ``value``."""
    units = EXACT.divide(value, step).quantize(Decimal(1), rounding=ROUND_FLOOR, context=EXACT)
    lower = units * step
    upper = lower if lower == value else (units + 1) * step
    return lower, upper


def on_grid(value: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value % step).is_zero()


@dataclass(frozen=True, slots=True)
class OrderAmounts:
    """What the filters look at: the order's prices and size (``None`` where not given)."""

    quantity: Decimal | None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    quote_quantity: Decimal | None = None


def check_filters(instrument: Instrument, order: OrderAmounts, *, reference_price: Decimal | None) -> None:
    """Raise :class:`FilterViolation` for the first filter the order breaks.

    ``reference_price`` (the market's last or the side's best price) values market orders for
    the min-notional check; a limit order is valued at its own price.
    """
    if instrument.status != "trading":
        raise FilterViolation(f"{instrument.symbol} is not trading ({instrument.status}).", code="instrument_halted",
                              extra={"symbol": instrument.symbol, "status": instrument.status})
    for field, price in (("price", order.price), ("stop_price", order.stop_price)):
        if price is None:
            continue
        if price <= 0:
            raise FilterViolation(f"{field} must be positive.", code="invalid_price", extra={"field": field})
        if not on_grid(price, instrument.tick_size):
            _off_grid(field, price, instrument.tick_size, "invalid_tick_size", "tick size")
    if order.quantity is not None:
        if order.quantity <= 0:
            raise FilterViolation("quantity must be positive.", code="invalid_quantity", extra={"field": "quantity"})
        if not on_grid(order.quantity, instrument.step_size):
            _off_grid("quantity", order.quantity, instrument.step_size, "invalid_step_size", "step size")
    if order.quote_quantity is not None and order.quote_quantity <= 0:
        raise FilterViolation("quote_quantity must be positive.", code="invalid_quantity",
                              extra={"field": "quote_quantity"})
    _check_min_notional(instrument, order, reference_price)


def _off_grid(field: str, value: Decimal, step: Decimal, code: str, name: str) -> None:
    lower, upper = grid_neighbours(value, step)
    nearest = [to_plain_string(v) for v in (lower, upper) if v > 0]
    raise FilterViolation(
        f"{field} {to_plain_string(value)} is not a multiple of the {name} {to_plain_string(step)}; "
        f"nearest valid: {' or '.join(nearest)}.",
        code=code, extra={"field": field, "value": to_plain_string(value), "increment": to_plain_string(step),
                          "nearest": nearest})


def _check_min_notional(instrument: Instrument, order: OrderAmounts, reference_price: Decimal | None) -> None:
    if instrument.min_notional <= 0:
        return
    if order.quote_quantity is not None:
        notional, price = order.quote_quantity, None
    else:
        price = order.price or order.stop_price or reference_price
        if price is None or order.quantity is None:
            return  # nothing to value it by yet; checked again when it triggers
        notional = order.quantity * price
    if notional >= instrument.min_notional:
        return
    extra: dict[str, object] = {"field": "quote_quantity" if price is None else "quantity",
                                "notional": to_plain_string(notional),
                                "min_notional": to_plain_string(instrument.min_notional)}
    if price is not None:
        extra["min_quantity"] = to_plain_string(min_quantity(instrument, price))
    raise FilterViolation(
        f"Order value {to_plain_string(notional)} {instrument.quote} is below the minimum "
        f"{to_plain_string(instrument.min_notional)} {instrument.quote}.",
        code="below_min_notional", extra=extra)


def min_quantity(instrument: Instrument, price: Decimal) -> Decimal:
    """The smallest quantity on the step grid worth at least the min notional at ``price``."""
    exact = EXACT.divide(instrument.min_notional, price)
    if instrument.step_size <= 0:
        return exact
    steps = EXACT.divide(exact, instrument.step_size).quantize(Decimal(1), rounding=ROUND_CEILING, context=EXACT)
    return steps * instrument.step_size
