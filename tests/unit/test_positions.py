"""The average-cost method of positions (trading.positions.apply_fill), exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradepilot.trading.positions import PositionState, apply_fill

D = Decimal
FLAT = PositionState(D(0), None, D(0))


def run(*fills: tuple[str, str, str], allow_short: bool = False) -> PositionState:
    state = FLAT
    for side, quantity, price in fills:
        state = apply_fill(state, side=side, price=D(price), quantity=D(quantity), allow_short=allow_short)
    return state


@pytest.mark.parametrize("fills, expected", [
    # buys average by quantity
    ([("buy", "0.04", "60000"), ("buy", "0.05", "60010"), ("buy", "0.01", "60020")], ("0.1", "60007", "0")),
    # a sale realises against the average and keeps it
    ([("buy", "1", "100"), ("buy", "1", "110"), ("sell", "0.5", "120")], ("1.5", "105", "7.5")),
    # selling everything flattens the position; realised P&L stays
    ([("buy", "2", "100"), ("sell", "2", "90")], ("0", None, "-20")),
    # a new buy after flat starts a fresh average
    ([("buy", "2", "100"), ("sell", "2", "90"), ("buy", "1", "50")], ("1", "50", "-20")),
    # spot: coins the position does not cover (deposited) realise nothing, and it stops at zero
    ([("sell", "1", "100")], ("0", None, "0")),
    ([("buy", "1", "100"), ("sell", "3", "130")], ("0", None, "30")),
    # averages that do not terminate are rounded half-even at 18 decimals
    ([("buy", "1", "1"), ("buy", "2", "2")], ("3", "1.666666666666666667", "0")),
])
def test_average_cost(fills: list[tuple[str, str, str]], expected: tuple[str, str | None, str]) -> None:
    state = run(*fills)
    quantity, average, realised = expected
    assert state.quantity == D(quantity)
    assert state.average_entry_price == (None if average is None else D(average))
    assert state.realised_pnl == D(realised)


def test_short_positions_for_later_margin_accounts() -> None:
    short = run(("sell", "2", "100"), ("sell", "2", "110"), allow_short=True)
    assert (short.quantity, short.average_entry_price) == (D(-4), D(105))
    covered = apply_fill(short, side="buy", price=D(95), quantity=D(1), allow_short=True)
    assert (covered.quantity, covered.average_entry_price, covered.realised_pnl) == (D(-3), D(105), D(10))
    flipped = apply_fill(covered, side="buy", price=D(90), quantity=D(5), allow_short=True)
    # closes 3 at 90 (+45), opens 2 long at 90
    assert (flipped.quantity, flipped.average_entry_price, flipped.realised_pnl) == (D(2), D(90), D(55))


def test_each_fill_records_what_it_realised_and_they_add_up_to_the_position_exactly() -> None:
    from datetime import UTC, datetime

    from tradepilot.trading.order_models import Position
    from tradepilot.trading.positions import record_fill

    row = Position(quantity=D(0), average_entry_price=None, realised_pnl=D(0), fees=D(0), opened_at=None)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    fills = [("buy", "1", "1"), ("buy", "2", "2"), ("sell", "1", "3"), ("sell", "1", "0.5"), ("buy", "3", "7"),
             ("sell", "4", "5.1")]
    realised = [record_fill(row, side=s, price=D(p), quantity=D(q), fee=D("0.01"), now=now) for s, q, p in fills]
    # the average 1.666666666666666667 (rounded) makes each sale's figure a rounded one too
    assert realised[:4] == [D(0), D(0), D("1.333333333333333333"), D("-1.166666666666666667")]
    assert realised[4] == 0
    total = D(0)
    for value in realised:
        total += value
    assert total == row.realised_pnl and row.quantity == 0 and row.fees == D("0.06")


def test_the_average_is_the_exact_cost_over_the_quantity_rounded_once() -> None:
    # a running average rounded at every fill ends at …666 here; cost 24 + 4 = 28 over 6 is …667,
    # what an order with these three fills averages
    state = run(("buy", "1", "1"), ("buy", "2", "3"), ("buy", "3", "7"))
    assert (state.cost, state.average_entry_price) == (D(28), D("4.666666666666666667"))
    # a sale scales the cost with what is left: the average stays
    sold = apply_fill(state, side="sell", price=D(5), quantity=D(3))
    assert (sold.quantity, sold.cost, sold.average_entry_price) == (D(3), D(14), D("4.666666666666666667"))
    # a row from before the cost column: quantity x average stands in
    older = apply_fill(PositionState(D(2), D(10), D(0)), side="buy", price=D(13), quantity=D(1))
    assert (older.cost, older.average_entry_price) == (D(33), D(11))
