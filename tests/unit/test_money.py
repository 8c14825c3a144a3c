from decimal import Decimal

import pytest

from tradepilot.core.money import PrecisionLossError, canonical, parse_decimal, to_plain_string


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.1", "0.1"), ("1e-18", "0.000000000000000001"), ("12345678901.123456789012345678", "12345678901.123456789012345678"),
     ("100", "100"), ("1.500", "1.5"), (Decimal("1E+3"), "1000"), (7, "7")],
)
def test_parse_and_plain_string(raw: object, expected: str) -> None:
    assert to_plain_string(parse_decimal(raw)) == expected


@pytest.mark.parametrize("raw", [0.1, True, "NaN", "Infinity", "1e-19", "0.0000000000000000001", "1e18", "abc", None, [1]])
def test_refuses_inexact_or_unrepresentable(raw: object) -> None:
    with pytest.raises(PrecisionLossError):
        parse_decimal(raw)


def test_canonical_is_equal_and_stable() -> None:
    assert canonical(Decimal("0.100000000000000000")) == Decimal("0.1")
    assert str(canonical(Decimal("5.000"))) == "5"


@pytest.mark.parametrize("raw", ["0", "-0", "0.000", "-0.000", "0E-20", "1E+5", "1.500", "-12.3400", "60000.5",
                                 "123456789012345678.123456789012345678", "5E-30", "1E+30",
                                 "0.1000000000000000000000000000000000000000000001"])
def test_plain_string_is_the_canonical_value(raw: str) -> None:
    """The fast string path gives exactly what formatting the canonical value gives."""
    assert to_plain_string(Decimal(raw)) == format(canonical(Decimal(raw)), "f")
