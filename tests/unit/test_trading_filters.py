"""Instrument filters: off-grid prices and sizes are refused with the nearest valid values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradepilot.market.types import Instrument
from tradepilot.trading.filters import FilterViolation, OrderAmounts, check_filters, grid_neighbours, min_quantity

BTC = Instrument(venue="paper", symbol="BTC/USDT", base="BTC", quote="USDT", tick_size=Decimal("0.01"),
                 step_size=Decimal("0.00001"), min_notional=Decimal("5"))
D = Decimal


def violation(order: OrderAmounts, reference: Decimal | None = D("65000"),
              instrument: Instrument = BTC) -> FilterViolation:
    with pytest.raises(FilterViolation) as caught:
        check_filters(instrument, order, reference_price=reference)
    return caught.value


@pytest.mark.parametrize(("order", "code", "extra"), [
    (OrderAmounts(quantity=D("0.1"), price=D("65000.005")), "invalid_tick_size",
     {"field": "price", "nearest": ["65000", "65000.01"], "increment": "0.01"}),
    (OrderAmounts(quantity=D("0.1"), price=D("65000"), stop_price=D("64000.123")), "invalid_tick_size",
     {"field": "stop_price", "nearest": ["64000.12", "64000.13"]}),
    (OrderAmounts(quantity=D("0.123456"), price=D("65000")), "invalid_step_size",
     {"field": "quantity", "nearest": ["0.12345", "0.12346"]}),
    (OrderAmounts(quantity=D("0.000001")), "invalid_step_size", {"nearest": ["0.00001"]}),  # zero is not valid
    (OrderAmounts(quantity=D("0.00007"), price=D("65000")), "below_min_notional",
     {"notional": "4.55", "min_notional": "5", "min_quantity": "0.00008"}),
    (OrderAmounts(quantity=D("0.00007")), "below_min_notional", {"min_quantity": "0.00008"}),  # market: last price
    (OrderAmounts(quantity=None, quote_quantity=D("4.99")), "below_min_notional", {"field": "quote_quantity"}),
    (OrderAmounts(quantity=D("0")), "invalid_quantity", {"field": "quantity"}),
    (OrderAmounts(quantity=D("-1"), price=D("1")), "invalid_quantity", {}),
    (OrderAmounts(quantity=D("1"), price=D("0")), "invalid_price", {"field": "price"}),
])
def test_each_filter_names_itself_and_the_fix(order: OrderAmounts, code: str, extra: dict) -> None:
    error = violation(order)
    assert error.status == 422 and error.code == code
    for key, value in extra.items():
        assert error.extra[key] == value, (key, error.extra)


def test_valid_orders_pass_and_nothing_is_rounded() -> None:
    for order in (OrderAmounts(quantity=D("0.1"), price=D("65000.01")),
                  OrderAmounts(quantity=D("0.00008"), price=D("65000")),
                  OrderAmounts(quantity=None, quote_quantity=D("5")),
                  OrderAmounts(quantity=D("1"), stop_price=D("60000"))):
        check_filters(BTC, order, reference_price=D("65000"))


def test_a_halted_instrument_takes_no_orders() -> None:
    halted = Instrument(**{**{f: getattr(BTC, f) for f in BTC.__slots__}, "status": "halted"})  # type: ignore[arg-type]
    assert violation(OrderAmounts(quantity=D("1"), price=D("1")), instrument=halted).code == "instrument_halted"


def test_market_order_without_a_price_to_value_it_is_left_for_later() -> None:
    check_filters(BTC, OrderAmounts(quantity=D("0.00001")), reference_price=None)


def test_min_quantity_is_on_the_grid_and_enough() -> None:
    assert min_quantity(BTC, D("65000")) == D("0.00008")
    assert min_quantity(BTC, D("5")) == D("1")


@given(value=st.decimals(min_value=D("0.000001"), max_value=D("1000000"), places=6),
       step=st.sampled_from([D("0.01"), D("0.00001"), D("0.5"), D("1"), D("25")]))
def test_grid_neighbours_bracket_the_value(value: Decimal, step: Decimal) -> None:
    lower, upper = grid_neighbours(value, step)
    assert lower <= value <= upper and upper - lower in (0, step)
    assert (lower % step).is_zero() and (upper % step).is_zero()
