"""The answers of ``/api/portfolio/optimize`` and ``/rebalance``, built in one place.

``POST /api/ai/optimize-portfolio`` answers with the same optimisation and the same
rebalance plan, so both routes build their bodies here rather than each keeping a copy.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradepilot.portfolio.optimize_service import OptimizedAllocation, optimize_allocation
from tradepilot.portfolio.rebalance_service import RebalanceResult
from tradepilot.portfolio.schemas import (
    AssetAllocationOut,
    BoundsIn,
    OptimizeIn,
    OptimizeInputsOut,
    OptimizeOut,
    RebalanceOrderOut,
    RebalanceOut,
    SkippedTradeOut,
)
from tradepilot.trading.execution import order_payload
from tradepilot.trading.order_schemas import OrderOut

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

WEIGHT_UNIT = Decimal("1e-12")  # weights in a rebalance answer: 12 places (computed exactly)


async def optimize_answer(runtime: Runtime, body: OptimizeIn) -> tuple[OptimizeOut, OptimizedAllocation]:
    """Run the optimiser as ``body`` asks; the answer and the allocation behind it."""
    method = body.resolved_method()
    per_symbol = body.bounds if isinstance(body.bounds, dict) else None
    default = body.bounds if isinstance(body.bounds, BoundsIn) else BoundsIn()
    allocation = await optimize_allocation(
        runtime.services["market"], runtime.clock, symbols=body.symbols, method=method,
        lookback_days=body.lookback_days,
        bounds=None if per_symbol is None else {s: (b.min, b.max) for s, b in per_symbol.items()},
        default_bounds=(default.min, default.max), target_return=body.target_return,
        risk_free_rate=body.risk_free_rate)
    result, closes = allocation.result, allocation.closes
    out = OptimizeOut(
        method=result.method, risk_tolerance=body.risk_tolerance, weights=result.weights,
        target_allocation=allocation.target_allocation, expected_return=result.expected_return,
        volatility=result.volatility, sharpe_ratio=result.sharpe_ratio, risk_free_rate=result.risk_free_rate,
        target_return=result.target_return, bounds=allocation.bounds,
        inputs=OptimizeInputsOut(symbols=result.symbols, start=closes.days[0], end=closes.days[-1],
                                 observations=result.observations, lookback_days=body.lookback_days),
        conventions=result.conventions())
    return out, allocation


def rebalance_answer(result: RebalanceResult, dry_run: bool, now: datetime) -> RebalanceOut:
    """The plan, and each placed order's outcome when it was executed."""
    plan, unit = result.plan, WEIGHT_UNIT
    if result.outcomes is None:
        orders = [RebalanceOrderOut(symbol=o.symbol, side=o.side, quantity=o.quantity, estimated_price=o.estimated_price,
                                    estimated_notional=o.estimated_notional, estimated_fee=o.estimated_fee)
                  for o in plan.orders]
    else:
        orders = [RebalanceOrderOut(
            symbol=r.planned.symbol, side=r.planned.side, quantity=r.planned.quantity,
            estimated_price=r.planned.estimated_price, estimated_notional=r.planned.estimated_notional,
            estimated_fee=r.planned.estimated_fee, status_code=r.status_code, error=r.error,
            order=None if r.order is None else OrderOut.of(order_payload(r.order))) for r in result.outcomes]
    return RebalanceOut(
        account_id=result.account.id, dry_run=dry_run, executed=bool(result.outcomes), currency=plan.quote,
        total_value=plan.total_value, tolerance=plan.tolerance, fee_rate=plan.fee_rate,
        needs_rebalance=plan.needs_rebalance, within_tolerance=plan.within_tolerance, cash_after=plan.cash_after,
        assets=[AssetAllocationOut(asset=a.asset, quantity=a.quantity, price=a.price, value=a.value,
                                   weight=a.weight.quantize(unit), target_weight=a.target_weight,
                                   projected_quantity=a.projected_quantity,
                                   projected_weight=a.projected_weight.quantize(unit)) for a in plan.assets],
        orders=orders,
        skipped=[SkippedTradeOut(asset=s.asset, symbol=s.symbol, side=s.side, quantity=s.quantity,
                                 notional=s.notional, reason=s.reason) for s in plan.skipped],
        ignored=plan.ignored, as_of=now)
