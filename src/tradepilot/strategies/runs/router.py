"""HTTP edge of live runs: ``POST /api/strategies/{id}/start`` and ``/stop``,
``GET /api/strategies/runs`` and ``GET /api/strategies/{id}/runs`` (docs/strategies.md, "Live runs").

Included before the strategies router, so that ``/api/strategies/runs`` is not taken for a
strategy id.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.idempotency import Idempotency
from tradepilot.strategies.deps import Engine, OwnedStrategy, ReadUser, TradeUser
from tradepilot.strategies.runs import service
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.strategies.runs.schemas import RunOut, RunPnl, RunStart

router = api_router(prefix="/api/strategies", tags=["strategies"])

RunStatusName = Literal["running", "stopped", "failed", "suspended"]
_START = {404: {"description": "strategy_not_found, account_not_found, unknown_symbol"},
          409: {"description": "strategy_already_running, account_closed"},
          422: {"description": "running_strategies_limit (plan's running_strategies), "
                               "unsupported_in_live_runs, invalid_strategy_params"},
          503: {"description": "model_not_ready (ai_signals trading the model's signals, with Retry-After)"}}


async def run_out(db: DbSession, runtime: RuntimeDep, run: StrategyRun) -> RunOut:
    return RunOut(**service.run_payload(run), params=run.params, created_at=run.created_at,
                  updated_at=run.updated_at, pnl=RunPnl(**await service.run_pnl(db, runtime.services.get("market"), run)))


@router.get("/runs", response_model=Page[RunOut], summary="Your strategies' live runs")
async def list_all_runs(principal: ReadUser, db: DbSession, runtime: RuntimeDep,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        cursor: Annotated[str | None, Query(max_length=200)] = None,
                        status_: Annotated[RunStatusName | None, Query(alias="status")] = None) -> Page[RunOut]:
    """Newest first, with each run's orders and P&L."""
    rows, next_cursor = await service.list_runs(db, user_id=principal.id, config_id=None, status=status_, limit=limit,
                                                cursor=cursor)
    return Page[RunOut](items=[await run_out(db, runtime, r) for r in rows], next_cursor=next_cursor)


@router.get("/{strategy_id}/runs", response_model=Page[RunOut], summary="A strategy's live runs",
            responses={404: {"description": "strategy_not_found"}})
async def list_runs(principal: ReadUser, row: OwnedStrategy, db: DbSession, runtime: RuntimeDep,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> Page[RunOut]:
    """Newest first."""
    rows, next_cursor = await service.list_runs(db, user_id=principal.id, config_id=row.id, status=None, limit=limit,
                                                cursor=cursor)
    return Page[RunOut](items=[await run_out(db, runtime, r) for r in rows], next_cursor=next_cursor)


@router.post("/{strategy_id}/start", status_code=status.HTTP_201_CREATED, response_model=RunOut,
             summary="Run a strategy live on one of your accounts", responses=_START)
async def start_strategy(idem: Idempotency, principal: TradeUser, row: OwnedStrategy, db: DbSession,
                         runtime: RuntimeDep, engine: Engine, body: RunStart | None = None) -> Response:
    """Starts a live run: from the next bar that closes, the strategy trades on the account
    (your default paper account unless `account_id` or the configuration names one) through
    the same checks as your own orders. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    run = await engine.run_strategy(db, row, body or RunStart())
    answer = await idem.respond(db, await run_out(db, runtime, run), status=status.HTTP_201_CREATED)
    await db.commit()
    return answer


@router.post("/{strategy_id}/stop", response_model=RunOut, summary="Stop a strategy's live run",
             responses={404: {"description": "strategy_not_found"},
                        409: {"description": "strategy_not_running"}})
async def stop_strategy(idem: Idempotency, principal: TradeUser, row: OwnedStrategy, db: DbSession,
                        runtime: RuntimeDep, engine: Engine) -> Response:
    """Stops the run (its open orders stay; cancel them or press the panic button). Accepts
    `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    run = await engine.stop_strategy(db, row)
    answer = await idem.respond(db, await run_out(db, runtime, run), status=status.HTTP_200_OK)
    await db.commit()
    return answer
