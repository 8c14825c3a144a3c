"""Matching engine restarts: rebuilt from its open orders (or a snapshot), it carries on exactly."""

from __future__ import annotations

import json

import pytest

from tests.matching_support import T0, D, at, engine_with, of, order, trade
from tradepilot.trading.engine import (
    EngineEvent,
    EngineSnapshot,
    Fill,
    MatchingEngine,
    OrderExpired,
    Triggered,
)


def busy_engine() -> MatchingEngine:
    """Resting limits at one level, a trailing stop that has moved, a half-filled bracket."""
    e = engine_with()
    e.on_trade(trade("100"))
    e.place(order("a", "buy", "limit", "1", price="99.5"), at(1))
    e.place(order("b", "buy", "limit", "1", price="99.5", account="b"), at(2))
    e.place(order("t", "sell", "trailing_stop", "1", trail_amount="6"), at(3))
    e.place(order("d", "buy", "limit", "1", price="90", time_in_force="day"), at(4))
    e.place_bracket("g", order("entry", "buy", "limit", "2", price="99"), at(5),
                    take_profit=order("tp", "sell", "limit", None, price="120"),
                    stop_loss=order("sl", "sell", "stop", None, stop="80"))
    e.on_trade(trade("104", "1", ts=at(6)))  # the trailing stop's mark moves to 104 (stop 98)
    e.on_trade(trade("99", "0.5", ts=at(7)))  # a fills 0.5 (first at the best level)
    return e


def continue_with(e: MatchingEngine) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    events += e.on_trade(trade("99", "3", ts=at(8), trade_id="x1"))  # a 0.5, b 1, entry 1.5
    events += e.on_trade(trade("97.5", ts=at(9), trade_id="x2"))  # entry 0.5; fires the trailing stop
    events += e.advance(at(86400))  # the day order expires
    return events


def test_load_from_the_open_orders_re_arms_everything() -> None:
    original = busy_engine()
    persisted = original.open_orders()  # what the persistence layer keeps: copies with state
    trailing = next(o for o in persisted if o.id == "t")
    assert (trailing.water_mark, trailing.stop_price) == (D("104"), D("98"))

    rebuilt = engine_with()  # a new process: the feed delivers a book again
    rebuilt.load(persisted, [original.group("g")])  # type: ignore[list-item]
    a, b = continue_with(original), continue_with(rebuilt)
    assert a == b
    assert [f.order_id for f in of(Fill, a)] == ["a", "b", "entry", "entry", "t"]
    assert [t.order_id for t in of(Triggered, a)] == ["t"]
    assert [x.order_id for x in of(OrderExpired, a)] == ["d"]
    assert rebuilt.order("tp").quantity == D("2")  # type: ignore[union-attr]


def test_snapshot_survives_json_and_restores_an_identical_engine() -> None:
    original = busy_engine()
    data = json.loads(json.dumps(original.snapshot().to_dict()))
    restored = MatchingEngine.restore(EngineSnapshot.from_dict(data))
    assert restored.snapshot().to_dict() == original.snapshot().to_dict()
    assert continue_with(original) == continue_with(restored)
    assert restored.snapshot().to_dict() == original.snapshot().to_dict()


def test_snapshot_is_a_copy() -> None:
    e = busy_engine()
    snap = e.snapshot()
    e.cancel("a", at(8))
    assert "a" in {o.id for o in snap.orders}
    assert next(o for o in snap.orders if o.id == "a").status == "partially_filled"


def test_load_refuses_closed_and_market_orders() -> None:
    e = MatchingEngine()
    done = order("x", "buy", "limit", "1", price="1", status="filled")
    with pytest.raises(ValueError, match="not an open"):
        e.load([done])
    with pytest.raises(ValueError, match="not an open"):
        e.load([order("m", "buy", "market", "1", status="new")])


def test_restored_orders_keep_their_fill_numbering() -> None:
    e = engine_with()
    e.place(order("a", "buy", "limit", "2", price="100"), T0)
    e.on_trade(trade("100", "0.5"))
    restored = MatchingEngine.restore(e.snapshot())
    events = restored.on_trade(trade("100", "0.5"))
    assert [f.trade_id for f in of(Fill, events)] == ["a-2"]
