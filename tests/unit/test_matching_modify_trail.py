"""Modify a trailing stop's trail: the level moves at once from the water mark kept so far."""

from __future__ import annotations

import pytest

from tests.matching_support import D, at, engine_with, kinds, of, order, trade
from tradepilot.trading.engine import OrderModified, Triggered

T = at(0)


def test_a_new_trail_moves_the_level_from_the_water_mark_and_fires_there() -> None:
    e = engine_with()
    e.on_trade(trade("100"))
    s = order("t", "sell", "trailing_stop", "1", trail_amount="2")
    e.place(s, T)
    e.on_trade(trade("104"))  # high-water mark 104: level 102
    assert s.stop_price == D("102")
    (m,) = of(OrderModified, e.modify("t", T, trail_percent=D("1")))
    # 104 × 99 / 100 = 102.96; the amount is replaced by the percentage
    assert (m.stop_price, m.lost_priority, m.revision) == (D("102.96"), True, 1)
    assert (s.trail_amount, s.trail_percent, s.stop_price) == (None, D("1"), D("102.96"))
    assert e.on_trade(trade("103")) == []
    assert of(Triggered, e.on_trade(trade("102.96")))[0].trigger_price == D("102.96")


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"trail_amount": D("1"), "trail_percent": D("1")}, "invalid_trail"),
    ({"trail_percent": D("100")}, "invalid_trail"),
    ({"trail_amount": D("-1")}, "invalid_trail"),
])
def test_refused_trail_changes(kwargs, code) -> None:  # type: ignore[no-untyped-def]
    e = engine_with()
    e.on_trade(trade("100"))
    e.place(order("t", "sell", "trailing_stop", "1", trail_amount="2"), T)
    events = e.modify("t", T, **kwargs)
    assert kinds(events) == ["ModifyRejected"] and events[0].code == code  # type: ignore[union-attr]


def test_only_a_trailing_stop_has_a_trail() -> None:
    e = engine_with()
    e.place(order("s", "sell", "stop", "1", stop="95"), T)
    events = e.modify("s", T, trail_amount=D("1"))
    assert events[0].code == "trail_not_allowed"  # type: ignore[union-attr]
