"""Matching engine, one order at a time: each type × time in force against a known book.

The book everywhere unless said otherwise: bids 99×1, 98×2, 97×5 | asks 101×1, 102×2, 103×5.
Fees: maker 0.0005, taker 0.001 (distinct, so each fill shows which one it paid).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.matching_support import (
    STANDARD,
    D,
    at,
    book,
    engine_with,
    fills,
    kinds,
    of,
    order,
    trade,
)
from tradepilot.market.types import Instrument
from tradepilot.trading.engine import (
    FeeRates,
    FeeSchedule,
    Fill,
    Liquidity,
    MatchingEngine,
    OrderAccepted,
    OrderCanceled,
    OrderModified,
    OrderRejected,
    OrderStatus,
    OrderUpdated,
    StopMoved,
    Triggered,
)

FEES = FeeSchedule(FeeRates(maker=D("0.0005"), taker=D("0.001")))
T = at(0)


def engine(market=STANDARD, **kw) -> MatchingEngine:  # type: ignore[no-untyped-def]
    return engine_with(market, fees=FeeSchedule(FEES.default, dict(FEES.accounts)), **kw)


def pairs(*values: tuple[str, str]) -> list[tuple[Decimal, Decimal]]:
    return [(D(p), D(q)) for p, q in values]


# -- market orders ----------------------------------------------------------------------------

@pytest.mark.parametrize(("side", "qty", "tif", "expected_fills", "status", "reason"), [
    # walks three levels: 101×1 + 102×2 + 103×0.5 = 356.5
    ("buy", "3.5", "gtc", [("101", "1"), ("102", "2"), ("103", "0.5")], "filled", None),
    ("sell", "3.5", "gtc", [("99", "1"), ("98", "2"), ("97", "0.5")], "filled", None),
    # larger than the visible depth: fills the 8 the book holds, the rest is canceled
    ("buy", "10", "gtc", [("101", "1"), ("102", "2"), ("103", "5")], "canceled", "insufficient_depth"),
    ("buy", "10", "day", [("101", "1"), ("102", "2"), ("103", "5")], "canceled", "insufficient_depth"),
    ("buy", "10", "ioc", [("101", "1"), ("102", "2"), ("103", "5")], "canceled", "insufficient_depth"),
    ("buy", "8", "fok", [("101", "1"), ("102", "2"), ("103", "5")], "filled", None),
    ("buy", "8.01", "fok", [], "canceled", "fok_unfillable"),
])
def test_market_order_walks_the_book(side, qty, tif, expected_fills, status, reason) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    m = order("m", side, "market", qty, time_in_force=tif)
    events = e.place(m, T)
    assert fills(events, "m") == pairs(*expected_fills)
    assert m.status == status
    assert all(f.liquidity == Liquidity.TAKER and f.market_trade_id is None for f in of(Fill, events))
    cancels = of(OrderCanceled, events)
    assert [c.reason for c in cancels] == ([reason] if reason else [])
    assert e.order("m") is None  # a market order never stays open


def test_market_order_average_price_and_fees_are_exact() -> None:
    e = engine()
    m = order("m", "buy", "market", "3.5")
    events = e.place(m, T)
    assert [f.fee for f in of(Fill, events)] == [D("0.101"), D("0.204"), D("0.0515")]
    assert m.filled_notional == D("356.5")
    assert m.average_price == D("101.857142857142857143")  # 356.5 / 3.5, half-even at 18 places
    assert m.fees == D("0.3565")  # 356.5 × 0.001, in the quote currency
    assert {f.fee_currency for f in of(Fill, events)} == {"USDT"}
    assert [f.trade_id for f in of(Fill, events)] == ["m-1", "m-2", "m-3"]
    last = of(OrderUpdated, events)[-1]
    assert (last.status, last.filled_quantity, last.remaining_quantity) == ("filled", D("3.5"), D(0))


def test_market_order_without_a_book_is_rejected() -> None:
    e = engine(market=None)
    events = e.place(order("m", "buy", "market", "1"), T)
    assert kinds(events) == ["OrderRejected"]
    assert of(OrderRejected, events)[0].code == "no_market_data"


def test_market_order_on_an_empty_side_is_canceled_unfilled() -> None:
    e = engine(book([("99", "1")], []))
    events = e.place(order("m", "buy", "market", "1"), T)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert of(OrderCanceled, events)[0].reason == "no_liquidity"


def test_an_account_cannot_take_the_same_level_twice_until_the_book_updates() -> None:
    e = engine()
    e.place(order("m1", "buy", "market", "1"), T)  # takes 101×1
    assert fills(e.place(order("m2", "buy", "market", "1"), T)) == pairs(("102", "1"))
    # another account still sees the whole book: users do not move each other's fills
    assert fills(e.place(order("m3", "buy", "market", "1", account="b"), T)) == pairs(("101", "1"))
    e.on_book(STANDARD)  # a new book: fresh liquidity for everyone
    assert fills(e.place(order("m4", "buy", "market", "1"), T)) == pairs(("101", "1"))


def test_quote_quantity_market_buy_spends_at_most_the_amount() -> None:
    instrument = Instrument("test", "BTC/USDT", "BTC", "USDT", D("0.01"), D("0.001"), D("1"))
    e = engine(instruments=[instrument])
    m = order("q", "buy", "market", None, quote_quantity="250")
    events = e.place(m, T)
    # 101×1 = 101, then 149 buys 1.460 at 102 (step 0.001) = 148.92; 0.08 left buys nothing more
    assert fills(events) == pairs(("101", "1"), ("102", "1.460"))
    assert m.filled_notional == D("249.920") <= D("250")
    assert m.status == OrderStatus.FILLED
    assert of(OrderUpdated, events)[-1].remaining_quantity is None


def test_quote_quantity_larger_than_the_book_fills_the_depth_and_cancels() -> None:
    e = engine()
    m = order("q", "buy", "market", None, quote_quantity="10000")
    events = e.place(m, T)
    assert m.filled_quantity == D("8") and m.filled_notional == D("820")
    assert of(OrderCanceled, events)[0].reason == "insufficient_depth"


def test_quote_quantity_without_instrument_uses_18_decimals_and_never_overspends() -> None:
    e = engine(book([], [("3", "100")]))
    m = order("q", "buy", "market", None, quote_quantity="100")
    e.place(m, T)
    assert m.filled_quantity == D("33.333333333333333333")
    assert m.filled_notional == D("99.999999999999999999") <= D("100")
    assert m.status == "filled"


# -- limit orders on arrival ------------------------------------------------------------------

@pytest.mark.parametrize(("side", "qty", "price", "tif", "taken", "status", "rests", "reason"), [
    ("buy", "2", "102", "gtc", [("101", "1"), ("102", "1")], "filled", False, None),
    ("buy", "5", "102", "gtc", [("101", "1"), ("102", "2")], "partially_filled", True, None),
    ("buy", "5", "102", "day", [("101", "1"), ("102", "2")], "partially_filled", True, None),
    ("buy", "5", "102", "ioc", [("101", "1"), ("102", "2")], "canceled", False, "ioc_remainder"),
    ("buy", "3", "102", "fok", [("101", "1"), ("102", "2")], "filled", False, None),
    ("buy", "3.5", "102", "fok", [], "canceled", False, "fok_unfillable"),
    ("buy", "1", "100", "gtc", [], "new", True, None),
    ("buy", "1", "100", "day", [], "new", True, None),
    ("buy", "1", "100", "ioc", [], "canceled", False, "ioc_remainder"),
    ("buy", "1", "100", "fok", [], "canceled", False, "fok_unfillable"),
    ("sell", "4", "98", "gtc", [("99", "1"), ("98", "2")], "partially_filled", True, None),
    ("sell", "1", "99.5", "gtc", [], "new", True, None),
    ("sell", "8", "97", "fok", [("99", "1"), ("98", "2"), ("97", "5")], "filled", False, None),
])
def test_limit_order_on_arrival(side, qty, price, tif, taken, status, rests, reason) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    lim = order("l", side, "limit", qty, price=price, time_in_force=tif)
    events = e.place(lim, T)
    assert fills(events, "l") == pairs(*taken)
    assert all(f.liquidity == Liquidity.TAKER for f in of(Fill, events))
    assert lim.status == status
    assert (e.order("l") is not None) == rests
    assert [c.reason for c in of(OrderCanceled, events)] == ([reason] if reason else [])
    if tif == "day" and rests:
        assert e.order("l").expires_at == datetime(2024, 8, 9, tzinfo=timezone.utc)  # type: ignore[union-attr]


@pytest.mark.parametrize(("side", "price", "accepted"), [
    ("buy", "101", False),  # at the best ask: would take
    ("buy", "105", False),
    ("buy", "100.99", True),
    ("sell", "99", False),
    ("sell", "99.01", True),
])
def test_post_only_rests_or_is_rejected(side, price, accepted) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    events = e.place(order("p", side, "limit", "1", price=price, post_only=True), T)
    if accepted:
        assert kinds(events) == ["OrderAccepted"] and e.order("p").status == "new"  # type: ignore[union-attr]
    else:
        (rejected,) = events
        assert isinstance(rejected, OrderRejected) and rejected.code == "post_only_would_take"
        assert e.order("p") is None


def test_post_only_checks_the_visible_book_even_after_the_account_took_the_level() -> None:
    e = engine()
    e.place(order("m", "buy", "market", "1"), T)  # this account took 101×1
    events = e.place(order("p", "buy", "limit", "1", price="101", post_only=True), T)
    assert of(OrderRejected, events)[0].code == "post_only_would_take"


# -- resting limits filled by trades ----------------------------------------------------------

def test_resting_buy_fills_only_on_a_trade_at_or_through_its_price_at_its_price() -> None:
    e = engine()
    lim = order("l", "buy", "limit", "1", price="100")
    e.place(lim, T)
    assert e.on_trade(trade("100.01", "5")) == []  # above a buy limit: nothing
    events = e.on_trade(trade("100", "0.4", trade_id="x1"))  # at: fills, bounded by the volume
    (f,) = of(Fill, events)
    assert (f.price, f.quantity, f.liquidity, f.market_trade_id) == (D("100"), D("0.4"), "maker", "x1")
    assert f.fee == D("0.02")  # 40 × 0.0005 maker
    assert lim.status == "partially_filled"
    events = e.on_trade(trade("99", "5"))  # through: fills the rest at the limit, not at 99
    assert fills(events) == pairs(("100", "0.6"))
    assert lim.status == "filled" and e.order("l") is None
    assert e.on_trade(trade("98", "5")) == []


def test_resting_sell_fills_on_a_trade_at_or_above_its_price() -> None:
    e = engine()
    e.place(order("s", "sell", "limit", "2", price="102"), T)
    assert e.on_trade(trade("101.99", "5")) == []
    assert fills(e.on_trade(trade("102.5", "1.5"))) == pairs(("102", "1.5"))
    assert fills(e.on_trade(trade("102", "9"))) == pairs(("102", "0.5"))


def test_price_time_priority_shares_a_trades_volume() -> None:
    e = engine()
    e.place(order("a", "buy", "limit", "1", price="100"), at(1))
    e.place(order("b", "buy", "limit", "1", price="100"), at(2))
    e.place(order("c", "buy", "limit", "1", price="100.5"), at(3))
    e.place(order("d", "buy", "limit", "1", price="99.5"), at(4))  # not reached by a trade at 100
    events = e.on_trade(trade("100", "1.5"))
    assert [(f.order_id, f.quantity) for f in of(Fill, events)] == [("c", D(1)), ("a", D("0.5"))]
    events = e.on_trade(trade("100", "1"))
    assert [(f.order_id, f.quantity) for f in of(Fill, events)] == [("a", D("0.5")), ("b", D("0.5"))]
    events = e.on_trade(trade("99", "10"))
    assert [(f.order_id, f.price, f.quantity) for f in of(Fill, events)] == [
        ("b", D("100"), D("0.5")), ("d", D("99.5"), D("1"))]


def test_a_trade_through_resting_buys_and_sells_fills_both_sides() -> None:
    e = engine(market=None)  # no book: nothing is marketable, both rest
    e.place(order("b", "buy", "limit", "1", price="101"), T)
    e.place(order("s", "sell", "limit", "1", price="99"), T)
    events = e.on_trade(trade("100", "0.5"))
    assert sorted((f.order_id, f.quantity) for f in of(Fill, events)) == [("b", D("0.5")), ("s", D("0.5"))]


def test_fee_rates_per_account_and_exact_fees() -> None:
    e = engine(book([], [("61837.63", "1")]))
    e.fees.set_account("vip", FeeRates(maker=D("-0.0001"), taker=D("0.0005")))
    f = of(Fill, e.place(order("a", "buy", "market", "0.00009"), T))[0]
    assert f.fee == D("0.0055653867")  # 61837.63 × 0.00009 × 0.001, exact
    f = of(Fill, e.place(order("v", "buy", "market", "0.00009", account="vip"), T))[0]
    assert f.fee == D("0.00278269335")
    e.place(order("r", "sell", "limit", "1", price="62000", account="vip"), T)
    f = of(Fill, e.on_trade(trade("62000", "1")))[0]
    assert f.fee == D("-6.2") and f.liquidity == "maker"  # a rebate


def test_a_fee_with_more_than_18_decimals_is_rounded_up_never_dropped() -> None:
    e = engine(book([], [("1.000000000000000001", "1")]))
    f = of(Fill, e.place(order("a", "buy", "market", "0.5"), T))[0]
    assert f.fee == D("0.000500000000000001")  # exact: 0.0005000000000000000005


# -- stops, take-profits, trailing stops ------------------------------------------------------

@pytest.mark.parametrize(("side", "kind", "stop", "quiet", "fire", "expected"), [
    ("sell", "stop", "98.5", "98.51", "98.5", [("99", "1"), ("98", "1")]),
    ("sell", "stop", "98.5", "99", "90", [("99", "1"), ("98", "1")]),  # a gap through the stop
    ("buy", "stop", "101.5", "101.49", "101.5", [("101", "1"), ("102", "1")]),
    ("sell", "take_profit", "105", "104.99", "105", [("99", "1"), ("98", "1")]),
    ("buy", "take_profit", "97", "97.01", "97", [("101", "1"), ("102", "1")]),
])
def test_stop_and_take_profit_trigger_into_a_market_order(side, kind, stop, quiet, fire, expected) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    s = order("s", side, kind, "2", stop=stop)
    assert kinds(e.place(s, T)) == ["OrderAccepted"]
    assert e.on_trade(trade(quiet)) == []
    events = e.on_trade(trade(fire, trade_id="fire"))
    (t,) = of(Triggered, events)
    assert (t.trigger_price, t.trade_price, t.market_trade_id) == (D(stop), D(fire), "fire")
    assert fills(events) == pairs(*expected)
    assert all(f.liquidity == "taker" for f in of(Fill, events))
    assert s.status == "filled" and s.triggered


@pytest.mark.parametrize(("side", "kind", "stop", "limit", "fire", "taken", "rest_trade", "rest_fill"), [
    # sell stop-limit: fires at 98.5, takes the bids ≥ 98.2 (99×1), rests 3 at 98.2
    ("sell", "stop_limit", "98.5", "98.2", "98.5", [("99", "1")], "98.2", ("98.2", "3")),
    ("buy", "stop_limit", "101.5", "101.8", "101.6", [("101", "1")], "101.8", ("101.8", "3")),
    ("sell", "take_profit_limit", "105", "98.5", "105", [("99", "1")], "98.5", ("98.5", "3")),
])
def test_stop_limit_triggers_into_a_limit_order(side, kind, stop, limit, fire, taken, rest_trade,  # type: ignore[no-untyped-def]
                                                rest_fill) -> None:
    e = engine()
    s = order("s", side, kind, "4", stop=stop, price=limit)
    e.place(s, T)
    events = e.on_trade(trade(fire))
    assert len(of(Triggered, events)) == 1
    assert fills(events) == pairs(*taken)
    assert s.status == "partially_filled" and e.order("s") is not None
    events = e.on_trade(trade(rest_trade, "10"))
    assert fills(events) == pairs(rest_fill)
    assert of(Fill, events)[0].liquidity == "maker" and s.status == "filled"


def test_stop_limit_ioc_cancels_what_it_cannot_take_when_triggered() -> None:
    e = engine()
    s = order("s", "sell", "stop_limit", "4", stop="98.5", price="98.2", time_in_force="ioc")
    e.place(s, T)
    events = e.on_trade(trade("98"))
    assert fills(events) == pairs(("99", "1"))
    assert of(OrderCanceled, events)[0].reason == "ioc_remainder"


def test_trailing_stop_follows_the_high_water_mark_and_triggers_exactly() -> None:
    e = engine()
    e.on_trade(trade("100"))
    s = order("t", "sell", "trailing_stop", "1", trail_amount="2")
    e.place(s, T)
    assert (s.water_mark, s.stop_price) == (D("100"), D("98"))
    moved = of(StopMoved, e.on_trade(trade("101")))
    assert [(m.water_mark, m.stop_price) for m in moved] == [(D("101"), D("99"))]
    e.on_trade(trade("103.5"))
    assert s.stop_price == D("101.5")
    assert e.on_trade(trade("102")) == []  # a retrace that does not reach the level
    assert e.on_trade(trade("101.51")) == []
    assert s.water_mark == D("103.5")  # lower trades never lower the mark
    events = e.on_trade(trade("101.5"))
    (t,) = of(Triggered, events)
    assert (t.trigger_price, t.trade_price) == (D("101.5"), D("101.5"))
    assert fills(events) == pairs(("99", "1"))


def test_trailing_stop_by_percent_and_buy_side_low_water_mark() -> None:
    e = engine()
    e.on_trade(trade("100"))
    s = order("t", "sell", "trailing_stop", "1", trail_percent="1.5")
    e.place(s, T)
    assert s.stop_price == D("98.5")
    e.on_trade(trade("110"))
    assert s.stop_price == D("108.35")  # 110 × 0.985, exact
    assert e.on_trade(trade("108.36")) == []
    assert of(Triggered, e.on_trade(trade("108.35")))[0].order_id == "t"

    b = order("u", "buy", "trailing_stop", "1", trail_percent="2")
    e.place(b, T)
    assert b.stop_price == D("110.517")  # from the last trade, 108.35 × 1.02
    e.on_trade(trade("95"))
    assert b.stop_price == D("96.9")  # low-water 95 × 1.02
    assert e.on_trade(trade("96.89")) == []
    (t,) = of(Triggered, e.on_trade(trade("96.9")))
    assert (t.order_id, t.trigger_price) == ("u", D("96.9"))


def test_trailing_stop_without_a_prior_trade_starts_at_the_first_one() -> None:
    e = engine()
    s = order("t", "sell", "trailing_stop", "1", trail_amount="1")
    e.place(s, T)
    assert s.water_mark is None and s.stop_price is None
    e.on_trade(trade("100"))
    assert (s.water_mark, s.stop_price) == (D("100"), D("99"))
    assert of(Triggered, e.on_trade(trade("99")))


def test_a_stop_placed_through_the_market_waits_for_the_next_trade() -> None:
    e = engine()
    e.on_trade(trade("100"))
    e.place(order("s", "sell", "stop", "1", stop="105"), T)  # already above the last trade
    assert of(Triggered, e.on_trade(trade("100")))


# -- day orders -------------------------------------------------------------------------------

def test_day_orders_expire_at_the_first_event_at_or_after_utc_midnight() -> None:
    evening = datetime(2024, 8, 8, 23, 59, 59, 999000, tzinfo=timezone.utc)
    midnight = datetime(2024, 8, 9, tzinfo=timezone.utc)
    e = engine()
    day = order("d", "buy", "limit", "1", price="100", time_in_force="day")
    gtc = order("g", "buy", "limit", "1", price="100")
    stop = order("s", "sell", "stop", "1", stop="90", time_in_force="day")
    e.place(day, evening)
    e.place(gtc, evening)
    e.place(stop, evening)
    assert day.expires_at == midnight
    assert e.advance(midnight.replace(microsecond=0) - (midnight - evening) / 2) == []
    events = e.on_trade(trade("100", "5", ts=midnight))  # expiry comes first, then the trade
    assert kinds(events)[:2] == ["OrderExpired", "OrderExpired"]
    assert [x.order_id for x in of(Fill, events)] == ["g"]
    assert day.status == "expired" and stop.status == "expired"
    # placed exactly at midnight: lives until the next one
    late = order("d2", "buy", "limit", "1", price="90", time_in_force="day")
    e.place(late, midnight)
    assert late.expires_at == midnight.replace(day=10)
    assert e.advance(midnight.replace(hour=23)) == []
    assert kinds(e.advance(midnight.replace(day=10))) == ["OrderExpired"]


def test_engine_time_never_goes_backwards() -> None:
    e = engine()
    e.advance(datetime(2024, 8, 9, 1, tzinfo=timezone.utc))
    d = order("d", "buy", "limit", "1", price="90", time_in_force="day")
    e.place(d, datetime(2024, 8, 8, 23, tzinfo=timezone.utc))  # a late caller: clamped to now
    assert d.expires_at == datetime(2024, 8, 10, tzinfo=timezone.utc)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        engine().advance(datetime(2024, 8, 8))


# -- modify and cancel ------------------------------------------------------------------------

def test_modify_down_keeps_priority_up_or_new_price_loses_it() -> None:
    e = engine()
    a = order("a", "buy", "limit", "1", price="100")
    e.place(a, at(1))
    e.place(order("b", "buy", "limit", "1", price="100"), at(2))
    events = e.modify("a", at(3), quantity=D("0.5"))
    (m,) = of(OrderModified, events)
    assert (m.revision, m.quantity, m.lost_priority) == (1, D("0.5"), False)
    assert [f.order_id for f in of(Fill, e.on_trade(trade("100", "0.1")))] == ["a"]
    assert e.modify("a", at(4), quantity=D("2"))[0].lost_priority  # type: ignore[union-attr]
    assert [f.order_id for f in of(Fill, e.on_trade(trade("100", "0.1")))] == ["b"]
    e.modify("b", at(5), price=D("99.9"))
    e.modify("b", at(6), price=D("100"))  # back to 100, behind a
    assert [f.order_id for f in of(Fill, e.on_trade(trade("100", "0.1")))] == ["a"]
    assert a.id == "a" and a.revision == 2 and e.order("b").revision == 2  # type: ignore[union-attr]


def test_modify_to_a_crossing_price_takes_like_a_new_order() -> None:
    e = engine()
    e.place(order("a", "buy", "limit", "3", price="100"), T)
    events = e.modify("a", T, price=D("102"))
    assert kinds(events)[0] == "OrderModified"
    assert fills(events) == pairs(("101", "1"), ("102", "2"))


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"price": D("101")}, "post_only_would_take"),
    ({"quantity": D("0.5")}, "quantity_below_filled"),
    ({"stop_price": D("90")}, "stop_price_not_allowed"),
    ({}, "nothing_to_modify"),
    ({"price": D("-1")}, "invalid_price"),
])
def test_refused_modifies_leave_the_order_unchanged(kwargs, code) -> None:  # type: ignore[no-untyped-def]
    e = engine()
    p = order("p", "buy", "limit", "2", price="100", post_only=True)
    e.place(p, T)
    e.on_trade(trade("100", "0.5"))
    events = e.modify("p", T, **kwargs)
    assert kinds(events) == ["ModifyRejected"] and events[0].code == code  # type: ignore[union-attr]
    assert (p.price, p.quantity, p.revision) == (D("100"), D("2"), 0)


def test_modify_a_stop_price_rearms_at_the_new_level() -> None:
    e = engine()
    e.place(order("s", "sell", "stop", "1", stop="95"), T)
    e.modify("s", T, stop_price=D("97"))
    assert e.on_trade(trade("97.5")) == []
    assert of(Triggered, e.on_trade(trade("96")))[0].trigger_price == D("97")
    e.place(order("s2", "sell", "stop", "1", stop="97"), T)
    e.modify("s2", T, stop_price=D("90"))
    assert e.on_trade(trade("96")) == []  # the old level is gone


def test_cancel_and_cancel_all() -> None:
    from tradepilot.trading.engine import UnknownOrderError
    e = engine()
    e.place(order("a1", "buy", "limit", "1", price="100"), T)
    e.place(order("a2", "sell", "stop", "1", stop="90"), T)
    e.place(order("a3", "buy", "limit", "1", price="100", symbol="ETH/USDT"), T)
    e.place(order("b1", "buy", "limit", "1", price="100", account="b"), T)
    (c,) = e.cancel("a1", T)
    assert isinstance(c, OrderCanceled) and c.reason == "canceled_by_user"
    with pytest.raises(UnknownOrderError):
        e.cancel("a1", T)
    with pytest.raises(UnknownOrderError):
        e.modify("a1", T, price=D("1"))
    assert [x.order_id for x in e.cancel_all("a", T, symbol="BTC/USDT")] == ["a2"]
    assert [x.order_id for x in e.cancel_all("a", T)] == ["a3"]
    assert [o.id for o in e.open_orders()] == ["b1"]
    assert fills(e.on_trade(trade("50", "10"))) == pairs(("100", "1"))  # b1 only
    assert e.on_trade(trade("80")) == []  # the canceled stop stays quiet


# -- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "code"), [
    ({"kind": "limit"}, "price_required"),
    ({"kind": "market", "price": "100"}, "price_not_allowed"),
    ({"kind": "stop"}, "stop_price_required"),
    ({"kind": "limit", "price": "100", "stop": "99"}, "stop_price_not_allowed"),
    ({"kind": "trailing_stop"}, "invalid_trail"),
    ({"kind": "trailing_stop", "trail_amount": "1", "trail_percent": "1"}, "invalid_trail"),
    ({"kind": "trailing_stop", "trail_percent": "100"}, "invalid_trail"),
    ({"kind": "limit", "price": "100", "trail_amount": "1"}, "trail_not_allowed"),
    ({"kind": "limit", "price": "100", "post_only": True, "time_in_force": "ioc"}, "invalid_post_only"),
    ({"kind": "stop_limit", "price": "100", "stop": "99", "post_only": True}, "invalid_post_only"),
    ({"kind": "limit", "price": "100", "quantity": None, "quote_quantity": "5"},
     "quote_quantity_requires_market"),
    ({"kind": "market", "quantity": None, "quote_quantity": "5", "time_in_force": "fok"},
     "invalid_time_in_force"),
    ({"kind": "market", "quantity": "1", "quote_quantity": "5"}, "invalid_quantity"),
    ({"kind": "market", "quantity": "0"}, "invalid_quantity"),
    ({"kind": "limit", "quantity": "1", "price": "-5"}, "price_required"),
])
def test_malformed_orders_are_rejected(kwargs, code) -> None:  # type: ignore[no-untyped-def]
    kwargs = dict(kwargs)
    kind = kwargs.pop("kind")
    qty = kwargs.pop("quantity", "1")
    price, stop = kwargs.pop("price", None), kwargs.pop("stop", None)
    o = order("x", "buy", kind, qty, price=price, stop=stop, **kwargs)
    events = engine().place(o, T)
    assert kinds(events) == ["OrderRejected"] and events[0].code == code  # type: ignore[union-attr]
    assert o.status == "rejected"


def test_order_ids_are_unique_among_open_orders() -> None:
    from tradepilot.trading.engine import DuplicateOrderError
    e = engine()
    e.place(order("a", "buy", "limit", "1", price="100"), T)
    with pytest.raises(DuplicateOrderError):
        e.place(order("a", "buy", "limit", "1", price="100"), T)


def test_events_announce_acceptance_first() -> None:
    e = engine()
    events = e.place(order("a", "buy", "limit", "2", price="101"), T)
    assert kinds(events) == ["OrderAccepted", "Fill", "OrderUpdated"]
    accepted = of(OrderAccepted, events)[0]
    assert accepted.status == "new" and accepted.seq > 0
