"""``StrategyEngine``: users' strategy configurations and their backtests (issue 8, §2).

* ``register_strategy`` / ``update_strategy`` validate the parameters against the catalog
  (pydantic models of the built-ins and plugins, the rule parser for ``rules``) and store the
  validated form with defaults filled in, so what is stored always runs.
* ``backtest_strategy`` snapshots the configuration into a ``strategy_backtest`` row and
  enqueues a job of the core **in the same transaction** (a backtest exists exactly when its
  job does). The job (``strategies/backtest_job.py``) reads candles from the store, runs the
  backtester and writes the report.
* ``get_strategy_performance`` is the latest succeeded backtest's result.

Per-plan limits, checked under the user row's lock so racing requests cannot overshoot:
``backtest_bars`` (the bars a backtest may process, estimated from the period: 422
``backtest_too_large``) and ``concurrent_backtests`` (queued or running backtest jobs: 429
``backtest_concurrency_limit``). Live runs (``run_strategy`` / ``stop_strategy``, §5) are
``strategies/runs``; the optimiser (``optimize_strategy``, §4) is ``strategies/optimize``.
"""

from __future__ import annotations

import math
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, RateLimited, Unprocessable
from tradepilot.core.money import to_plain_string
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.usage import usage_counter
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.market.types import TIMEFRAMES
from tradepilot.strategies.backtest import BacktestConfig
from tradepilot.strategies.models import BacktestRun, BacktestStatus, StrategyConfig, StrategyStatus
from tradepilot.strategies.runs import service as runs_service
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.strategies.runs.schemas import RunStart
from tradepilot.strategies.schemas import BacktestRequest, StrategyCreate, StrategySpec
from tradepilot.strategies.validation import validated_params
from tradepilot.trading.deps import account_of

if TYPE_CHECKING:
    from tradepilot.config import Settings
    from tradepilot.runtime import Runtime

SERVICE_KEY = "strategies"
BACKTEST_JOB = "strategies.backtest"
OPTIMIZE_JOB = "strategies.optimize"  # an optimisation (strategies/optimize/); counts as a backtest
REPORTS_DIR = "backtests"  # under data_dir: backtests/<user id>/<backtest id>/report.html …
CONCURRENCY_RETRY_AFTER = "30"


def strategy_not_found() -> NotFound:
    return NotFound("Strategy not found.", code="strategy_not_found")


def backtest_not_found() -> NotFound:
    return NotFound("Backtest not found.", code="backtest_not_found")


@usage_counter("concurrent_backtests")
async def count_active_backtests(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Backtest and optimisation jobs queued or running. Counted on the jobs, the record of what
    runs: a job that died or was cancelled stops counting at once, whatever became of its row."""
    count = await session.scalar(select(func.count()).select_from(Job).where(
        Job.user_id == user_id, Job.kind.in_((BACKTEST_JOB, OPTIMIZE_JOB)),
        Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))))
    return int(count or 0)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def backtest_period(request: Any, now: datetime) -> tuple[datetime, datetime]:
    """The request's ``start``..``end`` (default: now) in UTC; 422 ``invalid_range`` if empty."""
    start, end = _utc(request.start), _utc(request.end or now)
    if start >= end:
        raise Unprocessable("The period's start must be before its end.", code="invalid_range")
    return start, end


def trading_settings(request: Any, settings: Settings) -> dict[str, str | None]:
    """The simulated trading of a backtest or optimisation request (fees default to the paper
    exchange's), checked; 422 ``invalid_backtest_settings`` otherwise."""
    trading = {
        "initial_cash": to_plain_string(request.initial_cash),
        "maker_fee": to_plain_string(request.maker_fee if request.maker_fee is not None
                                     else settings.paper_maker_fee_rate),
        "taker_fee": to_plain_string(request.taker_fee if request.taker_fee is not None
                                     else settings.paper_taker_fee_rate),
        "slippage": to_plain_string(request.slippage),
        "volume_cap": None if request.volume_cap is None else to_plain_string(request.volume_cap),
    }
    try:
        backtest_config(trading)
    except ValueError as exc:
        raise Unprocessable(str(exc), code="invalid_backtest_settings") from None
    return trading


def estimated_bars(start: datetime, end: datetime, timeframe: str, symbols: int) -> int:
    """An upper bound of the bars a backtest processes (every period present, every symbol)."""
    return math.ceil((end - start).total_seconds() / TIMEFRAMES[timeframe]) * symbols


def status_with_job(stored: str, job: Job | None) -> str:
    """The status of work run as a job (a backtest, an optimisation): its own once final or
    once its job is pruned, else what its job says."""
    if stored in BacktestStatus.FINAL or job is None:
        return stored
    return {JobStatus.QUEUED: BacktestStatus.QUEUED, JobStatus.DEAD: BacktestStatus.FAILED,
            JobStatus.FAILED: BacktestStatus.FAILED,
            JobStatus.CANCELLED: BacktestStatus.CANCELLED}.get(job.status, BacktestStatus.RUNNING)


def error_with_job(stored: str | None, job: Job | None) -> str | None:
    return stored or (job.error if job is not None else None)


@dataclass(frozen=True)
class BacktestView:
    """A backtest with what its job says (status, progress) while the job still exists."""

    run: BacktestRun
    job: Job | None

    @property
    def status(self) -> str:
        return status_with_job(self.run.status, self.job)

    @property
    def error(self) -> str | None:
        return error_with_job(self.run.error, self.job)


class StrategyEngine:
    """One per process (``runtime.services["strategies"]``); stateless apart from the runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # configurations ----------------------------------------------------------------------

    async def register_strategy(self, session: AsyncSession, user_id: uuid.UUID, body: StrategyCreate) -> StrategyConfig:
        """A new configuration with validated parameters (422 with the field path if not)."""
        params = validated_params(body.strategy, body.params)
        await self._check_account(session, user_id, body.account_id)
        now = self.runtime.clock.now()
        row = StrategyConfig(user_id=user_id, name=body.name, strategy=body.strategy, params=params,
                             symbols=list(body.symbols), timeframe=body.timeframe, account_id=body.account_id,
                             status=StrategyStatus.IDLE, created_at=now, updated_at=now)
        session.add(row)
        await session.flush()
        return row

    async def update_strategy(self, session: AsyncSession, row: StrategyConfig, body: StrategyCreate) -> StrategyConfig:
        """Replace the configuration. Past backtests keep their own snapshot."""
        params = validated_params(body.strategy, body.params)
        await self._check_account(session, row.user_id, body.account_id)
        row.name, row.strategy, row.params = body.name, body.strategy, params
        row.symbols, row.timeframe, row.account_id = list(body.symbols), body.timeframe, body.account_id
        row.updated_at = self.runtime.clock.now()
        await session.flush()
        return row

    async def clone_strategy(self, session: AsyncSession, row: StrategyConfig, name: str | None) -> StrategyConfig:
        """A copy to experiment with; its backtests start empty."""
        now = self.runtime.clock.now()
        copy = StrategyConfig(user_id=row.user_id, name=name or f"{row.name} (copy)"[:100], strategy=row.strategy,
                              params=dict(row.params), symbols=list(row.symbols), timeframe=row.timeframe,
                              account_id=row.account_id, status=StrategyStatus.IDLE, created_at=now, updated_at=now)
        session.add(copy)
        await session.flush()
        return copy

    async def delete_strategy(self, session: AsyncSession, row: StrategyConfig) -> list[Path]:
        """Delete the configuration and its backtests; returns their report folders, which the
        caller removes once the deletion is committed (files cannot roll back). A running
        configuration is refused (409 ``strategy_running``): stop it first."""
        if row.status == StrategyStatus.RUNNING:
            raise Conflict("This strategy is running; stop it first.", code="strategy_running")
        runs = list(await session.scalars(select(BacktestRun).where(BacktestRun.strategy_config_id == row.id)))
        folders = [f for f in (self.report_folder(r) for r in runs) if f is not None]
        for run in runs:
            await session.delete(run)
        await session.delete(row)
        await session.flush()
        return folders

    async def list_strategies(self, session: AsyncSession, user_id: uuid.UUID, *, limit: int,
                              cursor: str | None) -> tuple[list[StrategyConfig], str | None]:
        """Newest first."""
        query = select(StrategyConfig).where(StrategyConfig.user_id == user_id)
        return await time_keyset_page(session, query, StrategyConfig.created_at, StrategyConfig.id, limit=limit,
                                      cursor=cursor)

    @staticmethod
    async def _check_account(session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
        if account_id is not None:
            await account_of(session, user_id, account_id)

    # backtests ---------------------------------------------------------------------------

    async def backtest_strategy(self, session: AsyncSession, row: StrategyConfig,
                                request: BacktestRequest) -> tuple[BacktestRun, int]:
        """Enqueue a backtest of the configuration as it is now; returns it and its bar estimate."""
        return await self._enqueue(session, row.user_id, row.id, StrategySpec(
            strategy=row.strategy, params=row.params, symbols=row.symbols, timeframe=row.timeframe),  # type: ignore[arg-type]
            row.params, request)

    async def backtest_inline(self, session: AsyncSession, user_id: uuid.UUID, spec: StrategySpec,
                              request: BacktestRequest) -> tuple[BacktestRun, int]:
        """The same backtest for a strategy given inline (``POST /api/ai/backtest-strategy``)."""
        return await self._enqueue(session, user_id, None, spec, validated_params(spec.strategy, spec.params),
                                   request)

    async def _enqueue(self, session: AsyncSession, user_id: uuid.UUID, config_id: uuid.UUID | None,
                       spec: StrategySpec, params: dict[str, Any], request: BacktestRequest) -> tuple[BacktestRun, int]:
        start, end = backtest_period(request, self.runtime.clock.now())
        trading = trading_settings(request, self.runtime.settings)
        bars = estimated_bars(start, end, spec.timeframe, len(spec.symbols))
        await self._check_limits(session, user_id, bars)
        run_id = uuid.uuid4()
        job = await self.runtime.services["jobs"].enqueue(
            session, kind=BACKTEST_JOB, payload={"backtest_id": str(run_id)}, user_id=user_id, max_attempts=2)
        run = BacktestRun(id=run_id, user_id=user_id, strategy_config_id=config_id, job_id=job.id,
                          strategy=spec.strategy, params=params, symbols=list(spec.symbols), timeframe=spec.timeframe,
                          period_start=start, period_end=end, settings=trading, status=BacktestStatus.QUEUED,
                          created_at=self.runtime.clock.now())
        session.add(run)
        await session.flush()
        return run, bars

    async def _check_limits(self, session: AsyncSession, user_id: uuid.UUID, bars: int) -> None:
        user = await session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                                    .execution_options(populate_existing=True))
        assert user is not None  # authenticated just now
        limits = effective_limits(user.plan, dict(settings_of(user).limits))
        if bars > limits.backtest_bars:
            raise Unprocessable(f"This backtest would process up to {bars:,} bars; your plan allows "
                                f"{limits.backtest_bars:,}. Shorten the period or use a longer timeframe.",
                                code="backtest_too_large", extra={"limit": limits.backtest_bars,
                                                                  "estimated_bars": bars})
        if await count_active_backtests(session, user_id) >= limits.concurrent_backtests:
            raise RateLimited(f"Your plan runs {limits.concurrent_backtests} backtests at once; wait for one "
                              "to finish.", code="backtest_concurrency_limit",
                              headers={"Retry-After": CONCURRENCY_RETRY_AFTER},
                              extra={"limit": limits.concurrent_backtests})

    async def list_backtests(self, session: AsyncSession, row: StrategyConfig, *, limit: int,
                             cursor: str | None) -> tuple[list[BacktestView], str | None]:
        """Newest first."""
        query = select(BacktestRun).where(BacktestRun.strategy_config_id == row.id)
        runs, next_cursor = await time_keyset_page(session, query, BacktestRun.created_at, BacktestRun.id,
                                                   limit=limit, cursor=cursor)
        return await self.views(session, runs), next_cursor

    async def views(self, session: AsyncSession, runs: list[BacktestRun]) -> list[BacktestView]:
        """The runs with their jobs, loaded in one query."""
        ids = [r.job_id for r in runs]
        jobs = {j.id: j for j in await session.scalars(select(Job).where(Job.id.in_(ids)))} if ids else {}
        return [BacktestView(r, jobs.get(r.job_id)) for r in runs]

    async def optimize_strategy(self, session: AsyncSession, row: StrategyConfig, request: Any) -> Any:
        """Enqueue an optimisation of the configuration (``strategies/optimize/service.py``);
        returns it, its trials per window and the period's estimated bars."""
        # imported here: the optimiser's service imports this module
        from tradepilot.strategies.optimize import service as optimize_service

        return await optimize_service.optimize_strategy(session, self.runtime, row, request)

    async def get_strategy_performance(self, session: AsyncSession, row: StrategyConfig) -> BacktestView | None:
        """The latest succeeded backtest of the configuration, or None."""
        run = await session.scalar(select(BacktestRun).where(
            BacktestRun.strategy_config_id == row.id, BacktestRun.status == BacktestStatus.SUCCEEDED)
            .order_by(BacktestRun.created_at.desc(), BacktestRun.id.desc()).limit(1))
        return None if run is None else (await self.views(session, [run]))[0]

    # live runs (strategies/runs, docs/strategies.md "Live runs") ---------------------------

    async def run_strategy(self, session: AsyncSession, row: StrategyConfig, body: RunStart) -> StrategyRun:
        """Start the configuration live on one of the user's accounts (the supervisor runs it)."""
        return await runs_service.start_run(self.runtime, session, row, body)

    async def stop_strategy(self, session: AsyncSession, row: StrategyConfig) -> StrategyRun:
        """Stop its running run (409 ``strategy_not_running`` when there is none)."""
        return await runs_service.stop_config(self.runtime, session, row)

    def report_folder(self, run: BacktestRun) -> Path | None:
        return None if run.report_path is None else self.runtime.settings.data_dir / run.report_path


def backtest_config(trading: dict[str, Any]) -> BacktestConfig:
    """The backtester's settings from a backtest's stored snapshot (exact strings → floats)."""
    return BacktestConfig(initial_cash=float(trading["initial_cash"]), maker_fee=float(trading["maker_fee"]),
                          taker_fee=float(trading["taker_fee"]), slippage=float(trading["slippage"]),
                          volume_cap=None if trading.get("volume_cap") is None else float(trading["volume_cap"]))


def remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def engine_of(runtime: Runtime) -> StrategyEngine:
    engine = runtime.services.get(SERVICE_KEY)
    if engine is None:
        engine = runtime.services[SERVICE_KEY] = StrategyEngine(runtime)
    return engine  # type: ignore[no-any-return]
