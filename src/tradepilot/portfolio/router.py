"""HTTP edge of the portfolio manager: ``POST /api/portfolio/rebalance`` and ``/optimize``
(docs/portfolio.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import require_scope
from tradepilot.identity.idempotency import Idempotency
from tradepilot.portfolio.optimize_service import optimize_allocation
from tradepilot.portfolio.rebalance_service import RebalanceResult, RebalanceService
from tradepilot.portfolio.schemas import (
    AssetAllocationOut,
    BoundsIn,
    OptimizeIn,
    OptimizeInputsOut,
    OptimizeOut,
    RebalanceIn,
    RebalanceOrderOut,
    RebalanceOut,
    SkippedTradeOut,
)
from tradepilot.trading.deps import ReadUser
from tradepilot.trading.execution import order_payload
from tradepilot.trading.order_schemas import OrderOut

router = api_router(prefix="/api/portfolio", tags=["portfolio"])

WEIGHT_UNIT = Decimal("1e-12")  # weights in a rebalance answer: 12 places (computed exactly)


def get_rebalancer(runtime: RuntimeDep) -> RebalanceService:
    return RebalanceService(runtime.services["orders"], runtime.services["market"], runtime.services["trading"])


Rebalancer = Annotated[RebalanceService, Depends(get_rebalancer)]


@router.post("/rebalance", response_model=RebalanceOut, summary="Rebalance an account to a target allocation",
             responses={403: {"description": "Executing (dry_run false) without the `trade` scope (insufficient_scope)"},
                        404: {"description": "The account is not yours (account_not_found)"},
                        409: {"description": "The account is closed (account_closed)"},
                        422: {"description": "A bad target: weights_do_not_sum_to_one, negative_weight, unknown_asset, "
                                             "empty_target_allocation; nothing_to_rebalance"},
                        503: {"description": "No price for an asset yet (market_data_unavailable); "
                                             "the platform halt (trading_halted)"}})
async def rebalance(idem: Idempotency, body: RebalanceIn, principal: ReadUser, db: DbSession,
                    rebalancer: Rebalancer) -> Response:
    """The market orders that bring the account's free balances to `target_allocation` within
    `tolerance`: sells before buys, quantities rounded down to the step size, trades below the
    instrument's minimums skipped and reported, buys scaled so cash never goes negative after fees.
    `dry_run` (the default) only plans; `dry_run: false` places the orders through the order
    service (filters, risk checks, idempotency, events) and returns each one's outcome.
    Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    if not body.dry_run:
        require_scope("trade")(principal)
    result = await rebalancer.rebalance(db, principal, account_id=body.account_id, target=body.target_allocation,
                                        tolerance=body.tolerance, dry_run=body.dry_run)
    out = _rebalance_out(result, body.dry_run, rebalancer.orders.clock.now())
    answer = await idem.respond(db, out, status=status.HTTP_200_OK)
    await db.commit()
    return answer


def _rebalance_out(result: RebalanceResult, dry_run: bool, now: datetime) -> RebalanceOut:
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


@router.post("/optimize", response_model=OptimizeOut, summary="Optimise an allocation from stored daily prices",
             responses={404: {"description": "A symbol the venue does not list (unknown_symbol)"},
                        422: {"description": "insufficient_history, missing_prices, infeasible_bounds, "
                                             "target_return_unreachable, no_positive_excess_return, "
                                             "optimization_failed, validation_error"}})
async def optimize(body: OptimizeIn, principal: ReadUser, runtime: RuntimeDep) -> OptimizeOut:
    """Mean-variance (max Sharpe, min volatility, efficient return), risk parity or HRP weights
    for `symbols`, from their stored daily closes over `lookback_days`. Expected returns and
    covariance: simple daily returns, mean and sample covariance × 365; the answer states the
    method, inputs and conventions. `target_allocation` can be passed to `/rebalance` as is."""
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
    return OptimizeOut(
        method=result.method, risk_tolerance=body.risk_tolerance, weights=result.weights,
        target_allocation=allocation.target_allocation, expected_return=result.expected_return,
        volatility=result.volatility, sharpe_ratio=result.sharpe_ratio, risk_free_rate=result.risk_free_rate,
        target_return=result.target_return, bounds=allocation.bounds,
        inputs=OptimizeInputsOut(symbols=result.symbols, start=closes.days[0], end=closes.days[-1],
                                 observations=result.observations, lookback_days=body.lookback_days),
        conventions=result.conventions())
