"""/api/ai routes of ``AdvancedAI`` a dashboard drives: portfolio optimisation with its
rebalancing orders, a strategy generated for the market's regime, a risk assessment.

Kept apart from ``ai/router.py`` (models, analysis, predictions, sentiment) so each file has
one job; both share the ``/api/ai`` prefix.
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import Response, status

from tradepilot.ai.advanced import MarketConditions, advanced_ai
from tradepilot.ai.advanced_schemas import (
    AiOptimizeIn,
    AiOptimizeOut,
    GeneratedStrategyOut,
    GenerateStrategyIn,
    RiskAssessmentIn,
    RiskAssessmentOut,
)
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import require_scope
from tradepilot.identity.idempotency import Idempotency
from tradepilot.portfolio.answers import optimize_answer, rebalance_answer
from tradepilot.portfolio.rebalance_service import RebalanceService
from tradepilot.strategies.deps import ReadUser

router = api_router(prefix="/api/ai", tags=["ai"])


def cash_target(weights: dict[str, Decimal], quote: str, cash: Decimal) -> dict[str, Decimal]:
    """The optimiser's weights (summing to exactly 1) scaled to ``1 - cash``, plus the cash:
    still exactly 1, as the rebalance planner requires."""
    target = {asset: w * (1 - cash) for asset, w in weights.items()}
    target[quote] = target.get(quote, Decimal(0)) + cash
    return target


@router.post("/optimize-portfolio", response_model=AiOptimizeOut,
             summary="Optimise an allocation and plan (or place) the orders that reach it",
             responses={403: {"description": "execute without the `trade` scope (insufficient_scope)"},
                        404: {"description": "unknown_symbol; account_not_found"},
                        422: {"description": "The optimiser's errors (insufficient_history, missing_prices, …); "
                                             "mixed_quote_currencies; the rebalance planner's"},
                        503: {"description": "market_data_unavailable; trading_halted"}})
async def optimize_portfolio(idem: Idempotency, body: AiOptimizeIn, principal: ReadUser, db: DbSession,
                             runtime: RuntimeDep) -> Response:
    """The optimiser of `POST /api/portfolio/optimize` (max Sharpe, min volatility, target return,
    risk parity, HRP) on the symbols' stored daily closes — weights, expected return, volatility,
    Sharpe — and the rebalancing orders that bring your account to those weights (with
    `cash_weight` kept in the quote currency). The orders are only planned unless `execute` is
    true, which needs the `trade` scope and places them through the rebalance service (filters,
    risk checks, events). Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    if body.execute:
        require_scope("trade")(principal)
    optimized, allocation = await optimize_answer(runtime, body)
    if allocation.target_allocation is None:
        raise Unprocessable("The symbols do not share one quote currency, so no single account can hold the "
                            "allocation.", code="mixed_quote_currencies")
    quote = runtime.services["market"].instrument(allocation.result.symbols[0]).quote
    target = cash_target(allocation.target_allocation, quote, body.cash_weight)
    rebalancer = RebalanceService(runtime.services["orders"], runtime.services["market"], runtime.services["trading"])
    result = await rebalancer.rebalance(db, principal, account_id=body.account_id, target=target,
                                        tolerance=body.tolerance, dry_run=not body.execute)
    out = AiOptimizeOut(optimization=optimized, target_allocation=target,
                        rebalance=rebalance_answer(result, not body.execute, runtime.clock.now()))
    answer = await idem.respond(db, out, status=status.HTTP_200_OK)
    await db.commit()
    return answer


@router.post("/generate-strategy", response_model=GeneratedStrategyOut,
             summary="A strategy for the market's regime, backtested out of sample",
             responses={404: {"description": "unknown_symbol"},
                        422: {"description": "insufficient_data: fewer closed bars than a fit and a test window"}})
async def generate_strategy(body: GenerateStrategyIn, _: ReadUser, runtime: RuntimeDep) -> GeneratedStrategyOut:
    """The newest `bars` closed bars are cut into a fit window and the test window after it.
    The regime at the fit window's end picks a family of registered strategies (trending →
    trend following, ranging → mean reversion, volatile → breakout behind stops); its
    parameters are chosen on the fit window, then backtested once on the test window beside
    buy-and-hold. `params` can be saved as is with `POST /api/strategies`."""
    generated = await advanced_ai(runtime).generate_trading_strategy(
        MarketConditions(body.symbol, body.timeframe, body.bars))
    symbol = runtime.services["market"].instrument(body.symbol).symbol
    return GeneratedStrategyOut(symbol=symbol, timeframe=body.timeframe, **generated.as_dict())


@router.post("/risk-assessment", response_model=RiskAssessmentOut, summary="VaR, CVaR, concentration, correlation",
             responses={404: {"description": "unknown_symbol; account_not_found"},
                        422: {"description": "no_holdings; insufficient_history; missing_prices"}})
async def risk_assessment(body: RiskAssessmentIn, principal: ReadUser, runtime: RuntimeDep) -> RiskAssessmentOut:
    """The risk of your holdings now (or of `weights`): one-day VaR and CVaR (historical and
    normal) at `level`, annualised volatility, concentration, the assets' correlations and the
    drawdowns the portfolio would have had, from the stored daily closes over `lookback_days`."""
    found = await advanced_ai(runtime).risk_assessment(principal.id, account_id=body.account_id, weights=body.weights,
                                                       lookback_days=body.lookback_days, level=body.level)
    return RiskAssessmentOut(**found)
