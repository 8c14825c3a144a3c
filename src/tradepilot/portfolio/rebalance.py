"""The rebalance planner: the market orders that bring holdings to a target allocation.

Pure and exact (``Decimal`` throughout, no I/O): ``rebalance_service`` feeds it an account's
free balances and the market's prices and places what it returns. The algorithm
(docs/portfolio.md#rebalancing):

1. Value every asset in scope at its mark price ``p`` (the quote asset is cash, at 1):
   ``V = cash + Σ q·p``, weights ``w = q·p / V``. In scope: the target's assets and every held
   asset with a market in the quote currency (one held but not in the target has target 0).
2. **Band**: if every weight (cash included) is within ``tolerance`` of its target, nothing
   is traded. Otherwise every asset is traded to its exact target (a threshold rebalance):
   leaving the in-band ones alone could leave cash out of its band.
3. **Sells** of ``(V·t − v) / p`` (everything, for target 0), at most the free quantity,
   rounded *down* to the step size; proceeds estimated at the bid less the taker fee.
4. **Buys** of ``(V·t − v) / p`` rounded down to the step size, costed at the ask plus the
   taker fee. If cash + proceeds cannot pay them all, every buy is scaled by the same factor
   (rounded down to its step again), then the largest is cut by one step at a time until the
   total fits: cash never goes negative.
5. A trade below one step (``below_min_quantity``) or below the instrument's minimum notional
   (``below_min_notional``), or on a halted instrument (``instrument_halted``) is skipped and
   reported, not placed.

Orders come out sells first, then buys, so the buys are paid from the sells' proceeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from tradepilot.core.money import EXACT
from tradepilot.market.types import Instrument
from tradepilot.portfolio.errors import InvalidTargetAllocation
from tradepilot.trading.engine.amounts import fee_for

ZERO = Decimal(0)
ONE = Decimal(1)
SUM_TOLERANCE = Decimal("1e-9")  # how far from 1 the target weights may sum
WEIGHT_PLACES = Decimal("1e-12")  # weights are reported to 12 places (computed exactly)

Side = Literal["buy", "sell"]
SkipReason = Literal["below_min_quantity", "below_min_notional", "instrument_halted"]


@dataclass(frozen=True, slots=True)
class AssetMarket:
    """What the planner knows of one non-cash asset: its instrument (filters) and prices in the
    quote currency. ``bid`` / ``ask`` estimate what a market sell / buy gets (default: ``price``)."""

    instrument: Instrument
    price: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None

    @property
    def sell_price(self) -> Decimal:
        return self.bid if self.bid is not None and self.bid > 0 else self.price

    @property
    def buy_price(self) -> Decimal:
        return self.ask if self.ask is not None and self.ask > 0 else self.price


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    asset: str
    symbol: str
    side: Side
    quantity: Decimal
    estimated_price: Decimal  # the bid (sell) or ask (buy) the estimate uses
    estimated_notional: Decimal
    estimated_fee: Decimal


@dataclass(frozen=True, slots=True)
class SkippedTrade:
    asset: str
    symbol: str
    side: Side
    quantity: Decimal  # what the trade would have been, on the step grid
    notional: Decimal
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class AssetAllocation:
    asset: str
    quantity: Decimal
    price: Decimal
    value: Decimal
    weight: Decimal
    target_weight: Decimal
    projected_quantity: Decimal
    projected_weight: Decimal

    @property
    def projected_deviation(self) -> Decimal:
        return abs(self.projected_weight - self.target_weight)


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    quote: str
    total_value: Decimal
    tolerance: Decimal
    fee_rate: Decimal
    needs_rebalance: bool  # some weight was outside its band
    orders: list[PlannedOrder]  # sells first, then buys
    skipped: list[SkippedTrade]
    assets: list[AssetAllocation]  # cash first, then by asset name
    cash_after: Decimal  # estimated: cash + proceeds − costs, never negative
    within_tolerance: bool  # the projected weights are all within the band
    ignored: list[str] = field(default_factory=list)  # held assets without a market: left alone

    @property
    def sells(self) -> list[PlannedOrder]:
        return [o for o in self.orders if o.side == "sell"]

    @property
    def buys(self) -> list[PlannedOrder]:
        return [o for o in self.orders if o.side == "buy"]


# --- validation --------------------------------------------------------------------------------

def validate_target(target: Mapping[str, Decimal], *, quote: str, markets: Mapping[str, AssetMarket]) -> None:
    """Raise :class:`InvalidTargetAllocation` (422) unless ``target`` is a long-only allocation
    of known assets summing to 1 within 1e-9."""
    if not target:
        raise InvalidTargetAllocation("The target allocation is empty.", code="empty_target_allocation")
    unknown = sorted(a for a in target if a != quote and a not in markets)
    if unknown:
        raise InvalidTargetAllocation(
            f"No {quote} market for {', '.join(unknown)}: only the quote asset and assets with a "
            f"market in {quote} can be targeted.", code="unknown_asset", extra={"assets": unknown, "quote": quote})
    negative = sorted(a for a, w in target.items() if not w.is_finite() or w < 0)
    if negative:
        raise InvalidTargetAllocation(f"Target weights must be non-negative: {', '.join(negative)}.",
                                      code="negative_weight", extra={"assets": negative})
    total = sum(target.values(), ZERO)
    if abs(total - ONE) > SUM_TOLERANCE:
        raise InvalidTargetAllocation(f"Target weights sum to {total}, not 1.", code="weights_do_not_sum_to_one",
                                      extra={"sum": str(total)})


# --- planning ------------------------------------------------------------------------------------

def plan_rebalance(*, holdings: Mapping[str, Decimal], target: Mapping[str, Decimal], quote: str,
                   markets: Mapping[str, AssetMarket], tolerance: Decimal, fee_rate: Decimal) -> RebalancePlan:
    """The orders that bring ``holdings`` (free quantities, by asset) to ``target`` (weights by
    asset, the quote asset included) within ``tolerance`` (an absolute weight band)."""
    validate_target(target, quote=quote, markets=markets)
    if tolerance < 0 or tolerance >= 1:
        raise InvalidTargetAllocation("tolerance must be at least 0 and below 1.", code="invalid_tolerance")
    cash = holdings.get(quote, ZERO)
    assets = sorted({a for a in target if a != quote} | {a for a, q in holdings.items() if q > 0 and a in markets
                                                         and a != quote})
    ignored = sorted(a for a, q in holdings.items() if q > 0 and a != quote and a not in markets)
    quantities = {a: holdings.get(a, ZERO) for a in assets}
    values = {a: EXACT.multiply(quantities[a], markets[a].price) for a in assets}
    total = EXACT.add(cash, sum(values.values(), ZERO))
    if total <= 0:
        raise InvalidTargetAllocation("The account holds nothing to rebalance.", code="nothing_to_rebalance")
    targets = {a: target.get(a, ZERO) for a in assets}
    cash_target = target.get(quote, ZERO)

    def weight(value: Decimal) -> Decimal:
        return EXACT.divide(value, total)

    needs = abs(weight(cash) - cash_target) > tolerance or any(
        abs(weight(values[a]) - targets[a]) > tolerance for a in assets)
    sells: list[PlannedOrder] = []
    wanted_buys: list[tuple[str, Decimal]] = []
    skipped: list[SkippedTrade] = []
    if needs:
        for asset in assets:
            market = markets[asset]
            gap = EXACT.subtract(EXACT.multiply(total, targets[asset]), values[asset])
            if gap < 0:
                amount = quantities[asset] if targets[asset] == 0 else \
                    min(EXACT.divide(-gap, market.price), quantities[asset])
                order = _sell(asset, market, floor_to_step(amount, market.instrument.step_size), fee_rate, skipped)
                if order is not None:
                    sells.append(order)
            elif gap > 0:
                wanted_buys.append((asset, floor_to_step(EXACT.divide(gap, market.price),
                                                         market.instrument.step_size)))
    proceeds = sum((EXACT.subtract(o.estimated_notional, o.estimated_fee) for o in sells), ZERO)
    budget = EXACT.add(cash, proceeds)
    buys = fit_buys(wanted_buys, markets, budget=budget, fee_rate=fee_rate, skipped=skipped)
    costs = sum((EXACT.add(o.estimated_notional, o.estimated_fee) for o in buys), ZERO)
    cash_after = EXACT.subtract(budget, costs)
    assert cash_after >= 0, "the buys were fitted to the budget"
    allocation = _project(quote, cash, cash_after, cash_target, assets, quantities, targets, markets,
                          sells + buys, total)
    within = all(a.projected_deviation <= tolerance for a in allocation)
    return RebalancePlan(quote=quote, total_value=total, tolerance=tolerance, fee_rate=fee_rate,
                         needs_rebalance=needs, orders=sells + buys, skipped=skipped, assets=allocation,
                         cash_after=cash_after, within_tolerance=within, ignored=ignored)


def fit_buys(wanted: list[tuple[str, Decimal]], markets: Mapping[str, AssetMarket], *, budget: Decimal,
             fee_rate: Decimal, skipped: list[SkippedTrade] | None = None) -> list[PlannedOrder]:
    """Buy orders for ``wanted`` (asset, quantity on the step grid) whose cost with fees fits
    ``budget``: scaled down together if needed, then cut a step at a time. The executor calls it
    again with the cash the sells really brought in."""
    skipped = skipped if skipped is not None else []
    quantities = dict(wanted)
    cost = _total_cost(quantities, markets, fee_rate)
    if cost > budget and cost > 0:
        factor = EXACT.divide(max(budget, ZERO), cost)
        quantities = {a: floor_to_step(EXACT.multiply(q, factor), markets[a].instrument.step_size)
                      for a, q in quantities.items()}
    while (cost := _total_cost(quantities, markets, fee_rate)) > budget:
        largest = max(quantities, key=lambda a: (_buy_cost(a, quantities[a], markets, fee_rate), a))
        step = markets[largest].instrument.step_size
        quantities[largest] = max(EXACT.subtract(quantities[largest], step), ZERO) if step > 0 else ZERO
    orders = []
    for asset, quantity in quantities.items():
        market = markets[asset]
        order = _order(asset, market, "buy", quantity, market.buy_price, fee_rate, skipped)
        if order is not None:
            orders.append(order)
    return orders


def floor_to_step(quantity: Decimal, step: Decimal) -> Decimal:
    """``quantity`` rounded down to a multiple of ``step`` (to 18 decimals when there is none)."""
    if quantity <= 0:
        return ZERO
    if step <= 0:
        return quantity.quantize(Decimal("1e-18"), rounding=ROUND_FLOOR, context=EXACT)
    units = EXACT.divide_int(quantity, step)
    return EXACT.multiply(units, step)


# --- helpers --------------------------------------------------------------------------------------

def _sell(asset: str, market: AssetMarket, quantity: Decimal, fee_rate: Decimal,
          skipped: list[SkippedTrade]) -> PlannedOrder | None:
    return _order(asset, market, "sell", quantity, market.sell_price, fee_rate, skipped)


def _order(asset: str, market: AssetMarket, side: Side, quantity: Decimal, price: Decimal, fee_rate: Decimal,
           skipped: list[SkippedTrade]) -> PlannedOrder | None:
    """The order, or ``None`` (recorded in ``skipped``) when the instrument's filters refuse it."""
    instrument = market.instrument
    notional = EXACT.multiply(quantity, price)
    reason: SkipReason | None = None
    if quantity <= 0 or (instrument.step_size > 0 and quantity < instrument.step_size):
        reason = "below_min_quantity"
    elif notional < instrument.min_notional:
        reason = "below_min_notional"
    elif instrument.status != "trading":
        reason = "instrument_halted"
    if reason is not None:
        skipped.append(SkippedTrade(asset, instrument.symbol, side, quantity, notional, reason))
        return None
    return PlannedOrder(asset=asset, symbol=instrument.symbol, side=side, quantity=quantity, estimated_price=price,
                        estimated_notional=notional, estimated_fee=fee_for(price, quantity, fee_rate))


def _buy_cost(asset: str, quantity: Decimal, markets: Mapping[str, AssetMarket], fee_rate: Decimal) -> Decimal:
    price = markets[asset].buy_price
    return EXACT.add(EXACT.multiply(quantity, price), fee_for(price, quantity, fee_rate))


def _total_cost(quantities: Mapping[str, Decimal], markets: Mapping[str, AssetMarket], fee_rate: Decimal) -> Decimal:
    return sum((_buy_cost(a, q, markets, fee_rate) for a, q in quantities.items() if q > 0), ZERO)


def _project(quote: str, cash: Decimal, cash_after: Decimal, cash_target: Decimal, assets: list[str],
             quantities: Mapping[str, Decimal], targets: Mapping[str, Decimal], markets: Mapping[str, AssetMarket],
             orders: list[PlannedOrder], total: Decimal) -> list[AssetAllocation]:
    """Each asset now and after the orders (at the mark prices, fees paid)."""
    after = dict(quantities)
    for order in orders:
        delta = order.quantity if order.side == "buy" else -order.quantity
        after[order.asset] = EXACT.add(after[order.asset], delta)
    total_after = EXACT.add(cash_after, sum((EXACT.multiply(after[a], markets[a].price) for a in assets), ZERO))

    def ratio(value: Decimal, of: Decimal) -> Decimal:
        return EXACT.divide(value, of) if of > 0 else ZERO

    rows = [AssetAllocation(quote, cash, ONE, cash, ratio(cash, total), cash_target, cash_after,
                            ratio(cash_after, total_after))]
    for asset in assets:
        price = markets[asset].price
        value = EXACT.multiply(quantities[asset], price)
        rows.append(AssetAllocation(asset, quantities[asset], price, value, ratio(value, total), targets[asset],
                                    after[asset], ratio(EXACT.multiply(after[asset], price), total_after)))
    return rows
