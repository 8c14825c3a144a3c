"""Exact arithmetic for fills: products are never rounded; rounding happens in three named places.

Python's default decimal context keeps 28 digits and rounds silently. A price and a quantity
of ``Numeric(36,18)`` can need 72 digits in their product, so products and sums use
:data:`EXACT`, which is wide enough and *traps* inexact results instead of rounding them.
Rounding is deliberate and local: fees are rounded up at the 18th decimal (the venue never
undercharges), a quote-sized order's quantity is rounded down to the step (it never
overspends), and an average price is rounded half-even for display (the exact figure is the
order's notional).
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    Clamped,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Underflow,
)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
SCALE = Decimal("1e-18")  # the 18 decimals of Numeric(36,18)

# Wide enough for (36-digit price × 36-digit quantity) × 18-digit rate; anything inexact raises.
EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact, Rounded,
                                 Clamped, Underflow])
# For the deliberate roundings (division, quantize): same width, no Inexact trap.
ROUND = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow])

_mul = EXACT.multiply


def notional(price: Decimal, quantity: Decimal) -> Decimal:
    return _mul(price, quantity)


def fee_for(price: Decimal, quantity: Decimal, rate: Decimal) -> Decimal:
    """price × quantity × rate, rounded towards +∞ only if it has more than 18 decimals."""
    fee = _mul(_mul(price, quantity), rate)
    exponent = fee.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -18:
        return fee.quantize(SCALE, rounding=ROUND_CEILING, context=ROUND)
    return fee


def quantity_for_budget(budget: Decimal, price: Decimal, step: Decimal) -> Decimal:
    """How much can be bought at ``price`` with ``budget``, rounded down to the step (exact:
    an integer division, so the cost never exceeds the budget)."""
    return _mul(ROUND.divide_int(budget, _mul(price, step)), step)
