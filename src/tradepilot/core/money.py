"""Exact decimal helpers shared by storage, JSON and the domain.

Money is stored with at most 18 fractional digits and 18 integer digits (``Numeric(36,18)``);
anything that does not fit is refused rather than rounded.
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

MAX_SCALE = 18
MAX_INTEGER_DIGITS = 18
# 36 significant digits fit in Numeric(36,18); Python's default context keeps only 28.
EXACT = Context(prec=MAX_SCALE + MAX_INTEGER_DIGITS + 4)


class PrecisionLossError(ValueError):
    """A value cannot be represented exactly in a money column."""


def canonical(value: Decimal) -> Decimal:
    """The value with trailing zeros removed, identical whichever database returned it."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=EXACT)
    return value.normalize(context=EXACT)


def to_plain_string(value: Decimal) -> str:
    """Fixed-point string without exponent: ``1E-18`` becomes ``0.000000000000000001``.

    Equal to ``format(canonical(value), "f")``, computed on the string (this runs for every
    decimal of every book, event payload and API answer): trailing fractional zeros are cut
    from the fixed-point text. Values with more digits than ``EXACT`` keeps take the slow
    path, which rounds them exactly as ``canonical`` does.
    """
    text = format(value, "f")
    if len(text) > EXACT.prec:  # possibly more significant digits than canonical() keeps
        return format(canonical(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def check_fits(value: Decimal) -> Decimal:
    """Refuse NaN, infinities and values that would lose digits in ``Numeric(36,18)``."""
    if not value.is_finite():
        raise PrecisionLossError("value must be a finite number")
    value = canonical(value)
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    scale = -exponent if exponent < 0 else 0
    integer_digits = max(len(digits) + exponent, 0)
    if scale > MAX_SCALE:
        raise PrecisionLossError(f"more than {MAX_SCALE} decimal places")
    if integer_digits > MAX_INTEGER_DIGITS:
        raise PrecisionLossError(f"more than {MAX_INTEGER_DIGITS} integer digits")
    return value


def parse_decimal(raw: object) -> Decimal:
    """Accept a string, int or Decimal (never a float: it is already inexact)."""
    if isinstance(raw, bool) or isinstance(raw, float):
        raise PrecisionLossError("send decimals as strings or exact JSON numbers")
    if isinstance(raw, Decimal):
        return check_fits(raw)
    if isinstance(raw, int):
        return check_fits(Decimal(raw))
    if isinstance(raw, str):
        try:
            return check_fits(Decimal(raw.strip()))
        except InvalidOperation:
            raise PrecisionLossError("not a decimal number") from None
    raise PrecisionLossError("not a decimal number")
