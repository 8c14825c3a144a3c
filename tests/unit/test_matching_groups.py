"""Matching engine groups: brackets (exits activate on the entry's fills) and OCO pairs."""

from __future__ import annotations

from tests.matching_support import T0, D, engine_with, fills, kinds, of, order, trade
from tradepilot.trading.engine import (
    Fill,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderUpdated,
    Triggered,
)


def bracket(e, entry_kind="limit", qty="2", price="100", tp="110", sl="95", **entry_kw):  # type: ignore[no-untyped-def]
    entry = order("entry", "buy", entry_kind, qty, price=price, **entry_kw)
    take = order("tp", "sell", "limit", None, price=tp) if tp else None
    stop = order("sl", "sell", "stop", None, stop=sl) if sl else None
    events = e.place_bracket("g1", entry, T0, take_profit=take, stop_loss=stop)
    return entry, take, stop, events


def test_bracket_exits_wait_for_the_entry_and_one_trade_can_fill_it_and_fire_the_stop() -> None:
    e = engine_with()
    _entry, tp, sl, events = bracket(e)
    assert [(a.order_id, a.status) for a in of(OrderAccepted, events)] == [
        ("entry", "new"), ("tp", "pending_new"), ("sl", "pending_new")]
    assert e.on_trade(trade("112", "9")) == []  # through the take-profit: it is not working yet
    events = e.on_trade(trade("94", "2"))  # a gap down: fills the entry, then fires the new stop
    assert fills(events, "entry") == [(D("100"), D("2"))]
    activated = [(u.order_id, u.previous_status, u.status) for u in of(OrderUpdated, events)
                 if u.order_id != "entry" and u.previous_status == "pending_new"]
    assert activated == [("tp", "pending_new", "new"), ("sl", "pending_new", "new")]
    assert of(Triggered, events)[0].order_id == "sl"
    assert fills(events, "sl") == [(D("99"), D("1")), (D("98"), D("1"))]
    assert tp.status == "canceled" and sl.status == "filled"


def test_bracket_lifecycle_entry_fills_then_take_profit_cancels_stop_loss() -> None:
    e = engine_with()
    entry, tp, sl, _ = bracket(e)
    assert e.on_trade(trade("96")) != []  # fills the entry (through 100); the stop at 95 not reached
    assert entry.filled_quantity == D("1") and entry.status == "partially_filled"
    assert (tp.status, tp.quantity, sl.status, sl.quantity) == ("new", D("1"), "new", D("1"))
    events = e.on_trade(trade("100", "5"))  # the rest of the entry: exits grow to 2
    assert entry.status == "filled"
    grown = [(u.order_id, u.remaining_quantity) for u in of(OrderUpdated, events) if u.order_id != "entry"]
    assert grown == [("tp", D("2")), ("sl", D("2"))]
    events = e.on_trade(trade("110", "0.5"))  # the take-profit starts filling: the stop-loss goes
    assert fills(events, "tp") == [(D("110"), D("0.5"))]
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [("sl", "oco_sibling_filled")]
    assert e.on_trade(trade("90", "9")) == []  # the canceled stop stays quiet
    events = e.on_trade(trade("111", "5"))
    assert fills(events, "tp") == [(D("110"), D("1.5"))] and tp.status == "filled"
    assert e.group("g1") is None  # every order closed: the group is gone


def test_bracket_stop_loss_trigger_cancels_take_profit_and_sells_at_market() -> None:
    e = engine_with()
    entry, _tp, _sl, _ = bracket(e, qty="1")
    e.on_trade(trade("100", "1"))
    assert entry.status == "filled"
    events = e.on_trade(trade("95"))
    assert of(Triggered, events)[0].order_id == "sl"
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [("tp", "oco_sibling_triggered")]
    assert fills(events, "sl") == [(D("99"), D("1"))]  # a market sell into the book's best bid
    assert e.open_orders() == []


def test_bracket_with_a_market_entry_activates_its_exits_at_once() -> None:
    e = engine_with()
    _, tp, sl, events = bracket(e, entry_kind="market", qty="1.5", price=None)
    assert fills(events, "entry") == [(D("101"), D("1")), (D("102"), D("0.5"))]
    assert (tp.status, tp.quantity, sl.status, sl.quantity) == ("new", D("1.5"), "new", D("1.5"))


def test_a_take_profit_already_through_the_market_takes_on_activation() -> None:
    e = engine_with()
    # entry at 101 (fills against the ask), take-profit at 98: below the best bid 99, so it sells
    _entry, _tp, _sl, events = bracket(e, qty="1", price="101", tp="98")
    assert fills(events, "tp") == [(D("99"), D("1"))]
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [("sl", "oco_sibling_filled")]


def test_canceling_an_unfilled_entry_cancels_the_exits() -> None:
    e = engine_with()
    bracket(e)
    events = e.cancel("entry", T0)
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [
        ("entry", "canceled_by_user"), ("tp", "bracket_entry_canceled"), ("sl", "bracket_entry_canceled")]
    assert e.group("g1") is None


def test_canceling_a_partly_filled_entry_keeps_the_exits_protecting_the_position() -> None:
    e = engine_with()
    _entry, tp, sl, _ = bracket(e)
    e.on_trade(trade("100", "0.5"))
    events = e.cancel("entry", T0)
    assert kinds(events) == ["OrderCanceled"]
    assert (tp.quantity, sl.quantity, tp.status, sl.status) == (D("0.5"), D("0.5"), "new", "new")


def test_an_exit_firing_while_the_entry_is_partly_filled_cancels_the_entry_rest() -> None:
    e = engine_with()
    _entry, _tp, _sl, _ = bracket(e, sl="99.5")
    e.on_trade(trade("100", "0.5"))  # entry 0.5 of 2; stop-loss active at 99.5
    events = e.on_trade(trade("99.5", "0.1"))  # the entry takes 0.1 more, then the stop fires
    assert fills(events, "entry") == [(D("100"), D("0.1"))]
    reasons = {c.order_id: c.reason for c in of(OrderCanceled, events)}
    assert reasons == {"tp": "oco_sibling_triggered", "entry": "bracket_exited"}
    assert fills(events, "sl") == [(D("99"), D("0.6"))]  # sized by the entry's 0.6


def test_canceling_an_exit_cancels_the_whole_bracket() -> None:
    e = engine_with()
    bracket(e)
    e.on_trade(trade("100", "0.5"))
    events = e.cancel("sl", T0)
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [
        ("sl", "canceled_by_user"), ("entry", "group_canceled"), ("tp", "group_canceled")]


def test_malformed_brackets_are_rejected_whole() -> None:
    e = engine_with()
    entry = order("entry", "buy", "limit", "1", price="100")
    same_side = order("tp", "buy", "limit", None, price="110")
    events = e.place_bracket("g1", entry, T0, take_profit=same_side)
    assert [(r.order_id, r.code) for r in of(OrderRejected, events)] == [
        ("entry", "group_rejected"), ("tp", "group_mismatch")]
    sized = order("tp2", "sell", "limit", "1", price="110")
    events = e.place_bracket("g2", order("e2", "buy", "limit", "1", price="100"), T0, take_profit=sized)
    assert of(OrderRejected, events)[1].code == "leg_quantity_not_allowed"
    wrong = order("sl3", "sell", "limit", None, price="90")
    events = e.place_bracket("g3", order("e3", "buy", "limit", "1", price="100"), T0, stop_loss=wrong)
    assert of(OrderRejected, events)[1].code == "invalid_exit_type"
    events = e.place_bracket("g4", order("e4", "buy", "limit", "1", price="100"), T0)
    assert of(OrderRejected, events)[0].code == "exit_required"
    assert e.open_orders() == []


def test_bracket_exit_quantity_cannot_be_modified() -> None:
    e = engine_with()
    bracket(e)
    (r,) = e.modify("tp", T0, quantity=D("5"))
    assert r.code == "sized_by_entry"  # type: ignore[union-attr]
    (m,) = e.modify("tp", T0, price=D("111"))  # prices can move while pending
    assert m.price == D("111")  # type: ignore[union-attr]


# -- OCO --------------------------------------------------------------------------------------

def oco(e):  # type: ignore[no-untyped-def]
    limit = order("lim", "sell", "limit", "1", price="110")
    stop = order("stp", "sell", "stop", "1", stop="95")
    return limit, stop, e.place_oco("o1", limit, stop, T0)


def test_oco_a_partial_fill_of_one_leg_cancels_the_other() -> None:
    e = engine_with()
    _limit, _stop, events = oco(e)
    assert [a.status for a in of(OrderAccepted, events)] == ["new", "new"]
    events = e.on_trade(trade("110", "0.3"))
    assert fills(events, "lim") == [(D("110"), D("0.3"))]
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [("stp", "oco_sibling_filled")]
    assert e.on_trade(trade("90")) == []


def test_oco_a_trigger_of_one_leg_cancels_the_other() -> None:
    e = engine_with()
    _limit, _stop, _ = oco(e)
    events = e.on_trade(trade("95"))
    assert [type(x).__name__ for x in events][:2] == ["Triggered", "OrderCanceled"]
    assert of(OrderCanceled, events)[0].order_id == "lim"
    assert fills(events, "stp") == [(D("99"), D("1"))]
    assert e.on_trade(trade("200", "9")) == []


def test_oco_canceling_one_leg_cancels_both() -> None:
    e = engine_with()
    oco(e)
    events = e.cancel("lim", T0)
    assert [(c.order_id, c.reason) for c in of(OrderCanceled, events)] == [
        ("lim", "canceled_by_user"), ("stp", "group_canceled")]


def test_oco_legs_must_share_a_side() -> None:
    e = engine_with()
    events = e.place_oco("o1", order("a", "sell", "limit", "1", price="110"),
                         order("b", "buy", "stop", "1", stop="95"), T0)
    assert [r.code for r in of(OrderRejected, events)] == ["group_rejected", "group_mismatch"]


def test_oco_with_a_marketable_leg_fills_it_and_never_arms_the_other() -> None:
    e = engine_with()
    limit = order("lim", "sell", "limit", "1", price="98")  # crosses the bid 99
    stop = order("stp", "sell", "stop", "1", stop="95")
    events = e.place_oco("o1", limit, stop, T0)
    assert fills(events, "lim") == [(D("99"), D("1"))]
    assert stop.status == "canceled"
    assert not of(Fill, e.on_trade(trade("90")))
