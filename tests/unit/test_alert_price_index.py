"""The price-alert index: each condition's semantics, and that firing leaves the rest alone."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal as D

from tradepilot.alerts.price_index import PriceAlertIndex, PriceRule
from tradepilot.notifications.quiet_hours import quiet_hours


def ids(fired: list[tuple[str, D]]) -> set[str]:
    return {rule_id for rule_id, _ in fired}


def test_above_and_below_fire_at_or_through_the_level() -> None:
    index = PriceAlertIndex()
    index.add(PriceRule("a100", "BTC/USDT", "above", D(100)))
    index.add(PriceRule("a105", "BTC/USDT", "above", D(105)))
    index.add(PriceRule("b95", "BTC/USDT", "below", D(95)))
    index.add(PriceRule("other", "ETH/USDT", "above", D(1)))
    assert ids(index.on_price("BTC/USDT", D("99.99"), 0)) == set()
    assert ids(index.on_price("BTC/USDT", D(100), 1)) == {"a100"}
    assert ids(index.on_price("BTC/USDT", D(110), 2)) == {"a100", "a105"}  # the index keeps them: the engine removes
    index.remove("a100")
    assert ids(index.on_price("BTC/USDT", D(95), 3)) == {"b95"}
    assert ids(index.on_price("BTC/USDT", D(120), 4)) == {"a105"}


def test_crosses_needs_a_move_through_the_level_in_its_direction() -> None:
    index = PriceAlertIndex()
    index.add(PriceRule("any", "BTC/USDT", "crosses", D(100), "any"))
    index.add(PriceRule("up", "BTC/USDT", "crosses", D(100), "up"))
    index.add(PriceRule("down", "BTC/USDT", "crosses", D(100), "down"))
    assert ids(index.on_price("BTC/USDT", D(101), 0)) == set()  # no previous price: nothing crossed
    assert ids(index.on_price("BTC/USDT", D(102), 1)) == set()  # above, but no crossing
    assert ids(index.on_price("BTC/USDT", D(100), 2)) == {"any", "down"}  # down to the level
    assert ids(index.on_price("BTC/USDT", D(99), 3)) == set()  # from the level down: crossed already
    assert ids(index.on_price("BTC/USDT", D(100), 4)) == {"any", "up"}  # up to the level
    assert ids(index.on_price("BTC/USDT", D(100), 5)) == set()  # unchanged


def test_percent_change_over_a_window() -> None:
    index = PriceAlertIndex()
    index.add(PriceRule("up5", "BTC/USDT", "percent_change", D(5), "up", 60))
    index.add(PriceRule("down5", "BTC/USDT", "percent_change", D(5), "down", 60))
    index.add(PriceRule("any10", "BTC/USDT", "percent_change", D(10), "any", 60))
    assert index.on_price("BTC/USDT", D(100), 0) == []  # the window is not covered yet
    assert index.on_price("BTC/USDT", D(104), 30) == []
    assert dict(index.on_price("BTC/USDT", D(105), 60)) == {"up5": D(5)}  # +5 % since t=0
    assert dict(index.on_price("BTC/USDT", D(104), 95)) == {}  # vs 104 at t=30 → 0 %
    # the reference is the price as of the window start (t=70): 105, set at t=60
    assert dict(index.on_price("BTC/USDT", D("94.5"), 130)) == {"down5": D(-10), "any10": D(-10)}


def test_quiet_hours_wrap_midnight_in_the_users_zone() -> None:
    from datetime import datetime

    window = quiet_hours("22:00", "07:00", "Europe/Berlin")
    assert window is not None
    assert window.holds(datetime(2026, 1, 1, 21, 30, tzinfo=UTC))  # 22:30 in Berlin
    assert not window.holds(datetime(2026, 1, 1, 6, 0, tzinfo=UTC))  # 07:00 in Berlin: over
    assert window.ends_after(datetime(2026, 1, 1, 21, 30, tzinfo=UTC)) == \
        datetime(2026, 1, 2, 6, 0, tzinfo=UTC)
    assert quiet_hours(None, None, "UTC") is None
