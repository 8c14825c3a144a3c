"""HTTP edge of the portfolio manager: ``POST /api/portfolio/rebalance`` and ``/optimize``
(docs/portfolio.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import require_scope
from tradepilot.identity.idempotency import Idempotency
from tradepilot.portfolio.answers import optimize_answer, rebalance_answer
from tradepilot.portfolio.rebalance_service import RebalanceService
from tradepilot.portfolio.schemas import OptimizeIn, OptimizeOut, RebalanceIn, RebalanceOut
from tradepilot.trading.deps import ReadUser

router = api_router(prefix="/api/portfolio", tags=["portfolio"])


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
    out = rebalance_answer(result, body.dry_run, rebalancer.orders.clock.now())
    answer = await idem.respond(db, out, status=status.HTTP_200_OK)
    await db.commit()
    return answer


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
    out, _ = await optimize_answer(runtime, body)
    return out
