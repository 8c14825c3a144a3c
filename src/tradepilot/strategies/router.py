"""HTTP edge of strategies: /api/strategies and /api/ai/backtest-strategy (docs/strategies.md, "API").

Reads need the ``read`` scope, anything that changes something or starts work ``trade``.
Every id-taking route loads through an ownership dependency (404 for another user's ids).
POSTs accept ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import Query, Response, status
from fastapi.responses import FileResponse

from tradepilot.core.deps import DbSession
from tradepilot.core.errors import Conflict, NotFound
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page, Schema
from tradepilot.identity.idempotency import Idempotency
from tradepilot.strategies.catalog import catalog
from tradepilot.strategies.deps import Engine, OwnedBacktest, OwnedStrategy, ReadUser, TradeUser
from tradepilot.strategies.engine import BacktestView, remove_folders
from tradepilot.strategies.models import BacktestStatus, StrategyConfig
from tradepilot.strategies.rules.schema import RULES_JSON_SCHEMA
from tradepilot.strategies.schemas import (
    BacktestAccepted,
    BacktestOut,
    BacktestRequest,
    InlineBacktest,
    PerformanceOut,
    StrategyClone,
    StrategyCreate,
    StrategyOut,
    StrategyReplace,
)

router = api_router(prefix="/api/strategies", tags=["strategies"])
ai_router = api_router(prefix="/api/ai", tags=["strategies"])

_NOT_FOUND = {404: {"description": "No such strategy, or not yours (strategy_not_found)"}}
_BT_NOT_FOUND = {404: {"description": "strategy_not_found, backtest_not_found"}}
_INVALID = {422: {"description": "validation_error, unknown_strategy, invalid_strategy_params (errors[] with the "
                                 "field path under params)"},
            404: {"description": "account_id is not one of your accounts (account_not_found)"}}
_BACKTEST = {422: {"description": "invalid_range, invalid_backtest_settings, backtest_too_large (plan's "
                                  "backtest_bars), invalid_strategy_params"},
             429: {"description": "backtest_concurrency_limit (plan's concurrent_backtests), with Retry-After"}}
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class CatalogOut(Schema):
    strategies: list[dict[str, Any]]
    rules_schema: dict[str, Any]


def strategy_out(row: StrategyConfig) -> StrategyOut:
    return StrategyOut.model_validate(row)


def backtest_out(view: BacktestView) -> BacktestOut:
    run, job = view.run, view.job
    report = None
    if run.status == BacktestStatus.SUCCEEDED and run.strategy_config_id is not None:
        base = f"/api/strategies/{run.strategy_config_id}/backtests/{run.id}/report"
        report = {"html": f"{base}?format=html", "png": f"{base}?format=png"}
    return BacktestOut(
        id=run.id, strategy_id=run.strategy_config_id, job_id=run.job_id, status=view.status,
        progress=1.0 if run.status == BacktestStatus.SUCCEEDED else (job.progress if job is not None else None),
        progress_message=job.progress_message if job is not None else None, error=view.error,
        strategy=run.strategy, params=run.params, symbols=run.symbols, timeframe=run.timeframe,
        start=run.period_start, end=run.period_end, settings=run.settings, bars=run.bars, summary=run.summary,
        report=report, created_at=run.created_at, finished_at=run.finished_at)


# the catalog ----------------------------------------------------------------------------

@router.get("/catalog", response_model=CatalogOut, summary="Strategies you can configure")
async def get_catalog(principal: ReadUser) -> CatalogOut:
    """Built-in and plugin strategies with their parameters' JSON Schema, plus the rule
    language's schema (the `rules` strategy's parameters are a rule document)."""
    return CatalogOut(strategies=catalog(), rules_schema=RULES_JSON_SCHEMA)


# configurations -------------------------------------------------------------------------

@router.get("", response_model=Page[StrategyOut], summary="Your strategy configurations")
async def list_strategies(
    principal: ReadUser, db: DbSession, engine: Engine,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[StrategyOut]:
    """Newest first."""
    rows, next_cursor = await engine.list_strategies(db, principal.id, limit=limit, cursor=cursor)
    return Page[StrategyOut](items=[strategy_out(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StrategyOut,
             summary="Create a strategy configuration", responses=_INVALID)
async def create_strategy(idem: Idempotency, body: StrategyCreate, principal: TradeUser, db: DbSession,
                          engine: Engine) -> Response:
    """A catalog strategy with its parameters (validated; defaults filled in), or `rules` with
    a rule document. Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    row = await engine.register_strategy(db, principal.id, body)
    answer = await idem.respond(db, strategy_out(row), status=status.HTTP_201_CREATED,
                                headers={"Location": f"/api/strategies/{row.id}"})
    await db.commit()
    return answer


@router.get("/{strategy_id}", response_model=StrategyOut, summary="A strategy configuration", responses=_NOT_FOUND)
async def get_strategy(principal: ReadUser, row: OwnedStrategy) -> StrategyOut:
    return strategy_out(row)


@router.put("/{strategy_id}", response_model=StrategyOut, summary="Replace a strategy configuration",
            responses={**_INVALID, **_NOT_FOUND})
async def replace_strategy(body: StrategyReplace, principal: TradeUser, row: OwnedStrategy, db: DbSession,
                           engine: Engine) -> StrategyOut:
    """Past backtests keep the parameters they ran with."""
    out = strategy_out(await engine.update_strategy(db, row, body))
    await db.commit()
    return out


@router.delete("/{strategy_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a strategy configuration",
               responses=_NOT_FOUND)
async def delete_strategy(principal: TradeUser, row: OwnedStrategy, db: DbSession, engine: Engine) -> Response:
    """Its backtests and their reports go too."""
    folders = await engine.delete_strategy(db, row)
    await db.commit()
    await asyncio.to_thread(remove_folders, folders)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{strategy_id}/clone", status_code=status.HTTP_201_CREATED, response_model=StrategyOut,
             summary="Copy a strategy configuration", responses=_NOT_FOUND)
async def clone_strategy(idem: Idempotency, principal: TradeUser, row: OwnedStrategy, db: DbSession, engine: Engine,
                         body: StrategyClone | None = None) -> Response:
    """Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    copy = await engine.clone_strategy(db, row, body.name if body is not None else None)
    answer = await idem.respond(db, strategy_out(copy), status=status.HTTP_201_CREATED,
                                headers={"Location": f"/api/strategies/{copy.id}"})
    await db.commit()
    return answer


# backtests ------------------------------------------------------------------------------

@router.post("/{strategy_id}/backtest", status_code=status.HTTP_202_ACCEPTED, response_model=BacktestAccepted,
             summary="Backtest a strategy configuration (a job)", responses={**_BACKTEST, **_NOT_FOUND})
async def backtest_strategy(idem: Idempotency, body: BacktestRequest, principal: TradeUser, row: OwnedStrategy,
                            db: DbSession, engine: Engine) -> Response:
    """Enqueues a backtest over `[start, end)` on the stored candles; follow it with
    `GET /api/strategies/{id}/backtests/{backtest_id}` or `GET /api/jobs/{job_id}`. Accepts
    `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    run, bars = await engine.backtest_strategy(db, row, body)
    accepted = BacktestAccepted(backtest_id=run.id, job_id=run.job_id, strategy_id=row.id, status=run.status,
                                estimated_bars=bars)
    answer = await idem.respond(db, accepted, status=status.HTTP_202_ACCEPTED,
                                headers={"Location": f"/api/strategies/{row.id}/backtests/{run.id}"})
    await db.commit()
    return answer


@router.get("/{strategy_id}/backtests", response_model=Page[BacktestOut], summary="A strategy's backtests",
            responses=_NOT_FOUND)
async def list_backtests(
    principal: ReadUser, row: OwnedStrategy, db: DbSession, engine: Engine,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[BacktestOut]:
    """Newest first."""
    views, next_cursor = await engine.list_backtests(db, row, limit=limit, cursor=cursor)
    return Page[BacktestOut](items=[backtest_out(v) for v in views], next_cursor=next_cursor)


@router.get("/{strategy_id}/backtests/{backtest_id}", response_model=BacktestOut, summary="A backtest",
            responses=_BT_NOT_FOUND)
async def get_backtest(principal: ReadUser, run: OwnedBacktest, db: DbSession, engine: Engine) -> BacktestOut:
    """Status and progress (from its job), then the summary: metrics, trades, final equity."""
    return backtest_out((await engine.views(db, [run]))[0])


@router.get("/{strategy_id}/backtests/{backtest_id}/report", summary="A backtest's report (HTML or PNG)",
            response_class=Response,
            responses={**_BT_NOT_FOUND, 409: {"description": "Not succeeded (yet): backtest_not_finished"},
                       200: {"content": {"text/html": {}, "image/png": {}}}})
async def get_report(principal: ReadUser, run: OwnedBacktest, engine: Engine,
                     format_: Annotated[Literal["html", "png"], Query(alias="format")] = "html") -> Response:
    """`html`: one self-contained page (charts embedded as data: URIs); `png`: equity and drawdown."""
    if run.status != BacktestStatus.SUCCEEDED:
        raise Conflict(f"The backtest is {run.status}; its report exists once it succeeded.",
                       code="backtest_not_finished")
    folder = engine.report_folder(run)
    path = folder / ("report.html" if format_ == "html" else "equity.png") if folder is not None else None
    if path is None or not path.is_file():
        raise NotFound("The report's files are missing.", code="report_not_found")
    if format_ == "html":
        return FileResponse(path, media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"})
    return FileResponse(path, media_type="image/png", headers={"X-Content-Type-Options": "nosniff"})


@router.get("/{strategy_id}/performance", response_model=PerformanceOut, summary="A strategy's latest result",
            responses=_NOT_FOUND)
async def get_performance(principal: ReadUser, row: OwnedStrategy, db: DbSession, engine: Engine) -> PerformanceOut:
    """The latest succeeded backtest (live performance comes with live runs); `backtest` is
    null before the first one."""
    view = await engine.get_strategy_performance(db, row)
    return PerformanceOut(strategy_id=row.id, backtest=None if view is None else backtest_out(view))


# the plan's AI endpoint -----------------------------------------------------------------

@ai_router.post("/backtest-strategy", status_code=status.HTTP_202_ACCEPTED, response_model=BacktestAccepted,
                summary="Backtest a strategy given inline (a job)", responses=_BACKTEST)
async def backtest_inline(idem: Idempotency, body: InlineBacktest, principal: TradeUser, db: DbSession,
                          engine: Engine) -> Response:
    """The same backtest as `POST /api/strategies/{id}/backtest` for a strategy that is not
    saved; its outcome is the job's result (`GET /api/jobs/{job_id}`). Accepts `Idempotency-Key`."""
    if idem.replay is not None:
        return idem.replay
    request = BacktestRequest.model_validate(body.model_dump(exclude={"strategy"}))
    run, bars = await engine.backtest_inline(db, principal.id, body.strategy, request)
    accepted = BacktestAccepted(backtest_id=run.id, job_id=run.job_id, strategy_id=None, status=run.status,
                                estimated_bars=bars)
    answer = await idem.respond(db, accepted, status=status.HTTP_202_ACCEPTED)
    await db.commit()
    return answer
