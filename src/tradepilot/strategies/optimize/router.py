"""HTTP edge of optimisations: ``POST /api/strategies/{id}/optimize`` and
``GET /api/strategies/{id}/optimizations[/{oid}]``, ``POST …/{oid}/cancel``.

Scopes as for backtests: ``trade`` to start or cancel, ``read`` to look. Every id goes
through an ownership dependency (404 for another user's). The POST accepts ``Idempotency-Key``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.idempotency import Idempotency
from tradepilot.strategies.deps import Engine, OwnedStrategy, ReadUser, TradeUser
from tradepilot.strategies.optimize import service
from tradepilot.strategies.optimize.models import Optimization, OptimizationStatus
from tradepilot.strategies.optimize.schemas import (
    OptimizationAccepted,
    OptimizationOut,
    OptimizeRequest,
)
from tradepilot.strategies.optimize.service import OptimizationView, optimization_not_found

router = api_router(prefix="/api/strategies", tags=["strategies"])

_NOT_FOUND = {404: {"description": "strategy_not_found, optimization_not_found"}}
_OPTIMIZE = {422: {"description": "invalid_search_space, grid_needs_step, grid_too_large (errors[] with the path "
                                  "under space), invalid_range, invalid_backtest_settings, period_too_short, "
                                  "backtest_too_large (plan's backtest_bars), optimization_too_large (plan's "
                                  "optimization_trials)"},
             429: {"description": "backtest_concurrency_limit (plan's concurrent_backtests, shared with "
                                  "backtests), with Retry-After"},
             **_NOT_FOUND}


@ownership_dependency
async def owned_optimization(optimization_id: uuid.UUID, strategy: OwnedStrategy, db: DbSession) -> Optimization:
    """An optimisation of the caller's strategy ``strategy_id``; 404 ``optimization_not_found``
    for a missing id, another user's, or one of another strategy."""
    row = await db.get(Optimization, optimization_id)
    if row is None or row.strategy_config_id != strategy.id or row.user_id != strategy.user_id:
        raise optimization_not_found()
    return row


OwnedOptimization = Annotated[Optimization, Depends(owned_optimization)]


def optimization_out(view: OptimizationView, *, with_trials: bool) -> OptimizationOut:
    row, job = view.row, view.job
    return OptimizationOut(
        id=row.id, strategy_id=row.strategy_config_id, job_id=row.job_id, status=view.status,
        progress=1.0 if row.status == OptimizationStatus.SUCCEEDED else (job.progress if job is not None else None),
        progress_message=job.progress_message if job is not None else None, error=view.error,
        strategy=row.strategy, params=row.params, symbols=row.symbols, timeframe=row.timeframe,
        start=row.period_start, end=row.period_end, settings=row.settings, request=row.request, report=row.report,
        trials=row.trials if with_trials else None, created_at=row.created_at, finished_at=row.finished_at)


@router.post("/{strategy_id}/optimize", status_code=status.HTTP_202_ACCEPTED, response_model=OptimizationAccepted,
             summary="Optimise a strategy's parameters (a job)", responses=_OPTIMIZE)
async def optimize_strategy(idem: Idempotency, body: OptimizeRequest, principal: TradeUser, row: OwnedStrategy,
                            db: DbSession, engine: Engine) -> Response:
    """Searches `space` with the sampler on `[start, end)`, judged by `objective` on in-sample
    bars and reported against the following out-of-sample bars (`walk_forward` windows).
    Follow it with `GET /api/strategies/{id}/optimizations/{optimization_id}` or
    `GET /api/jobs/{job_id}`. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    opt, n_trials, bars = await engine.optimize_strategy(db, row, body)
    accepted = OptimizationAccepted(optimization_id=opt.id, job_id=opt.job_id, strategy_id=row.id,
                                    status=opt.status, n_trials=n_trials, estimated_bars=bars)
    answer = await idem.respond(db, accepted, status=status.HTTP_202_ACCEPTED,
                                headers={"Location": f"/api/strategies/{row.id}/optimizations/{opt.id}"})
    await db.commit()
    return answer


@router.get("/{strategy_id}/optimizations", response_model=Page[OptimizationOut],
            summary="A strategy's optimisations", responses=_NOT_FOUND)
async def list_optimizations(
    principal: ReadUser, row: OwnedStrategy, db: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[OptimizationOut]:
    """Newest first; without their trials (ask one optimisation with `?trials=true`)."""
    views, next_cursor = await service.list_optimizations(db, row, limit=limit, cursor=cursor)
    return Page[OptimizationOut](items=[optimization_out(v, with_trials=False) for v in views],
                                 next_cursor=next_cursor)


@router.get("/{strategy_id}/optimizations/{optimization_id}", response_model=OptimizationOut,
            summary="An optimisation", responses=_NOT_FOUND)
async def get_optimization(principal: ReadUser, opt: OwnedOptimization, db: DbSession,
                           trials: bool = False) -> OptimizationOut:
    """Status and progress (from its job), then the report: per window the best parameters
    with in-sample and out-of-sample metrics side by side, the aggregate and `best_params`."""
    return optimization_out((await service.views(db, [opt]))[0], with_trials=trials)


@router.post("/{strategy_id}/optimizations/{optimization_id}/cancel", response_model=OptimizationOut,
             summary="Cancel an optimisation",
             responses={**_NOT_FOUND, 409: {"description": "Already finished: optimization_finished"}})
async def cancel_optimization(principal: TradeUser, opt: OwnedOptimization, db: DbSession,
                              runtime: RuntimeDep) -> OptimizationOut:
    """A queued one is cancelled at once; a running one stops after its trials in flight."""
    view = await service.cancel_optimization(db, runtime, opt)
    await db.commit()
    return optimization_out(view, with_trials=False)
