"""The rebalance planner (portfolio.rebalance): worked cases and hypothesis properties — cash
never negative, sells before buys, quantities on the step grid, and the target reached within
the tolerance whenever the filters and fees leave room for it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradepilot.market.types import Instrument
from tradepilot.portfolio.errors import InvalidTargetAllocation
from tradepilot.portfolio.rebalance import AssetMarket, fit_buys, plan_rebalance

D = Decimal
FEE = D("0.001")


def instrument(asset: str, *, step: str = "0.00001", min_notional: str = "5", status: str = "trading") -> Instrument:
    return Instrument(venue="test", symbol=f"{asset}/USDT", base=asset, quote="USDT", tick_size=D("0.01"),
                      step_size=D(step), min_notional=D(min_notional), status=status)  # type: ignore[arg-type]


MARKETS = {"BTC": AssetMarket(instrument("BTC"), D("60000")),
           "ETH": AssetMarket(instrument("ETH", step="0.0001"), D("3000"))}


def plan(holdings: dict[str, str], target: dict[str, str], tolerance: str = "0.01", markets=MARKETS,  # type: ignore[no-untyped-def]
         fee: Decimal = FEE):
    return plan_rebalance(holdings={a: D(q) for a, q in holdings.items()}, target={a: D(w) for a, w in target.items()},
                          quote="USDT", markets=markets, tolerance=D(tolerance), fee_rate=fee)


def test_from_cash_to_the_plans_example() -> None:
    result = plan({"USDT": "10000"}, {"BTC": "0.5", "ETH": "0.2", "USDT": "0.3"})
    assert result.needs_rebalance and result.total_value == D("10000")
    assert [(o.side, o.symbol, o.quantity) for o in result.orders] == [
        ("buy", "BTC/USDT", D("0.08333")), ("buy", "ETH/USDT", D("0.6666"))]
    btc, eth = result.orders
    assert btc.estimated_notional == D("4999.8") and btc.estimated_fee == D("4.9998")
    assert eth.estimated_notional == D("1999.8") and eth.estimated_fee == D("1.9998")
    assert result.cash_after == D("10000") - D("4999.8") - D("4.9998") - D("1999.8") - D("1.9998")
    assert result.within_tolerance and not result.skipped


def test_sells_come_before_buys_and_unlisted_holdings_are_sold() -> None:
    markets = {**MARKETS, "SOL": AssetMarket(instrument("SOL", step="0.001"), D("150"))}
    result = plan({"USDT": "100", "BTC": "0.1", "SOL": "10"}, {"ETH": "0.6", "BTC": "0.2", "USDT": "0.2"},
                  markets=markets)
    sides = [o.side for o in result.orders]
    assert sides == sorted(sides, key=lambda s: s != "sell")  # every sell first
    assert {o.asset: o.quantity for o in result.sells} == {"SOL": D("10"), "BTC": D("0.07466")}  # (6000 − 0.2 × 7600) / 60000, floored
    assert [o.asset for o in result.buys] == ["ETH"]
    assert result.within_tolerance and result.cash_after >= 0


def test_within_the_band_nothing_is_traded() -> None:
    result = plan({"USDT": "3050", "BTC": "0.0825", "ETH": "0.67"}, {"BTC": "0.5", "ETH": "0.2", "USDT": "0.3"},
                  tolerance="0.02")
    assert not result.needs_rebalance and result.orders == [] and result.within_tolerance


def test_trades_below_the_filters_are_skipped_and_reported() -> None:
    markets = {"BTC": AssetMarket(instrument("BTC", min_notional="100"), D("60000")),
               "HLT": AssetMarket(instrument("HLT", status="halted"), D("10"))}
    # V = 1900: BTC 900 → 950 is a buy of 0.00083 (49.8 USDT, below 100); HLT is halted
    result = plan({"USDT": "1000", "BTC": "0.015"}, {"BTC": "0.5", "HLT": "0.05", "USDT": "0.45"}, markets=markets)
    assert {(s.asset, s.side, s.reason) for s in result.skipped} == {("BTC", "buy", "below_min_notional"),
                                                                      ("HLT", "buy", "instrument_halted")}
    assert result.orders == [] and not result.within_tolerance


def test_buys_are_scaled_so_cash_covers_the_fees() -> None:
    result = plan({"USDT": "10000"}, {"BTC": "0.5", "ETH": "0.5"})  # no cash left for the fees at target
    assert result.cash_after >= 0
    spent = sum(o.estimated_notional + o.estimated_fee for o in result.buys)
    assert spent <= D("10000") and spent > D("9980")
    assert result.within_tolerance


def test_fit_buys_cuts_steps_until_the_budget_holds() -> None:
    orders = fit_buys([("BTC", D("0.1")), ("ETH", D("1"))], MARKETS, budget=D("9002.999"), fee_rate=FEE)
    cost = sum(o.estimated_notional + o.estimated_fee for o in orders)
    assert cost <= D("9002.999")
    assert cost > D("9002.999") - D("60000") * D("0.00001") * 2  # within a step or two of the budget


@pytest.mark.parametrize(("target", "code"), [
    ({"BTC": "0.5", "ETH": "0.6"}, "weights_do_not_sum_to_one"),
    ({"BTC": "1.2", "USDT": "-0.2"}, "negative_weight"),
    ({"DOGE": "0.5", "USDT": "0.5"}, "unknown_asset"),
    ({}, "empty_target_allocation"),
])
def test_bad_targets_are_refused_with_stable_codes(target: dict[str, str], code: str) -> None:
    with pytest.raises(InvalidTargetAllocation) as refused:
        plan({"USDT": "100"}, target)
    assert refused.value.code == code and refused.value.status == 422


def test_a_sum_within_1e9_of_one_is_accepted() -> None:
    assert plan({"USDT": "100"}, {"BTC": "0.5", "USDT": "0.5000000005"}).total_value == D("100")


# --- properties ----------------------------------------------------------------------------------

ASSETS = ["AAA", "BBB", "CCC", "DDD"]
decimals = st.decimals


@st.composite
def scenarios(draw):  # type: ignore[no-untyped-def]
    names = draw(st.lists(st.sampled_from(ASSETS), min_size=1, max_size=4, unique=True))
    markets, holdings = {}, {"USDT": draw(decimals("0", "100000", places=2))}
    for name in names:
        price = draw(decimals("0.01", "90000", places=2))
        step = D(1).scaleb(-draw(st.integers(0, 8)))
        spread = draw(decimals("0", "0.002", places=4))
        markets[name] = AssetMarket(instrument(name, step=str(step), min_notional=str(draw(decimals("0", "10", places=1)))),
                                    price, bid=(price * (1 - spread)).quantize(D("1e-8")),
                                    ask=(price * (1 + spread)).quantize(D("1e-8"), rounding="ROUND_CEILING"))
        if draw(st.booleans()):
            holdings[name] = draw(decimals("0", "50", places=8))
    raw = [draw(st.integers(0, 100)) for _ in range(len(names) + 1)]
    if sum(raw) == 0:
        raw[-1] = 1
    total = sum(raw)
    weights = [D(r) / D(total) for r in raw]
    weights[-1] = D(1) - sum(weights[:-1])
    target = dict(zip([*names, "USDT"], weights, strict=True))
    tolerance = draw(decimals("0.01", "0.2", places=3))
    fee = draw(decimals("0", "0.001", places=4))
    return holdings, target, markets, tolerance, fee


def _value(holdings, markets) -> Decimal:  # type: ignore[no-untyped-def]
    return holdings.get("USDT", D(0)) + sum(q * markets[a].price for a, q in holdings.items() if a != "USDT")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_properties_of_every_plan(scenario) -> None:  # type: ignore[no-untyped-def]
    holdings, target, markets, tolerance, fee = scenario
    if _value(holdings, markets) <= 0:
        return
    result = plan_rebalance(holdings=holdings, target=target, quote="USDT", markets=markets, tolerance=tolerance,
                            fee_rate=fee)
    # no negative cash: the buys are paid from the cash and the sells' proceeds, fees included
    cash = holdings["USDT"]
    for order in result.orders:  # in the order they are placed
        flow = order.estimated_notional - order.estimated_fee if order.side == "sell" else \
            -(order.estimated_notional + order.estimated_fee)
        cash += flow
        assert cash >= 0
    assert cash == result.cash_after
    # sells precede buys
    sides = [o.side for o in result.orders]
    assert "sell" not in sides[sides.index("buy"):] if "buy" in sides else True
    for order in result.orders:
        step = markets[order.asset].instrument.step_size
        assert order.quantity > 0 and order.quantity % step == 0
        assert order.estimated_notional >= markets[order.asset].instrument.min_notional
        if order.side == "sell":
            assert order.quantity <= holdings.get(order.asset, D(0))
    assert sum(a.projected_weight for a in result.assets) == pytest.approx(1, abs=1e-20) or result.cash_after == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_target_is_reached_within_tolerance_when_achievable(scenario) -> None:  # type: ignore[no-untyped-def]
    holdings, target, markets, tolerance, fee = scenario
    total = _value(holdings, markets)
    n = len(markets)
    # achievable: a step, the minimum notional and the spread each cost far less than the band
    room = total * tolerance / (20 * n)
    if total <= 0 or any(m.instrument.step_size * m.price > room or m.instrument.min_notional > room
                         or (m.buy_price - m.sell_price) / m.price > tolerance / 10 for m in markets.values()):
        return
    result = plan_rebalance(holdings=holdings, target=target, quote="USDT", markets=markets, tolerance=tolerance,
                            fee_rate=fee)
    assert result.within_tolerance, [(a.asset, a.projected_weight, a.target_weight) for a in result.assets]
    for allocation in result.assets:
        assert abs(allocation.projected_weight - allocation.target_weight) <= tolerance
