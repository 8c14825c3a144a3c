"""Optimisation use cases: enqueue one (validated, within the plan), look them up, cancel.

Like a backtest, an optimisation row and its job are created in one transaction. Limits,
checked under the user row's lock: the period's bars (``backtest_bars``, 422
``backtest_too_large``), the trials of all windows together (``optimization_trials``, 422
``optimization_too_large``) and the jobs running at once, shared with backtests
(``concurrent_backtests``, 429 ``backtest_concurrency_limit``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, RateLimited, Unprocessable
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.jobs import service as jobs_service
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.strategies.catalog import get_strategy
from tradepilot.strategies.engine import (
    CONCURRENCY_RETRY_AFTER,
    OPTIMIZE_JOB,
    backtest_period,
    count_active_backtests,
    error_with_job,
    estimated_bars,
    status_with_job,
    trading_settings,
)
from tradepilot.strategies.models import StrategyConfig
from tradepilot.strategies.optimize.models import Optimization, OptimizationStatus
from tradepilot.strategies.optimize.schemas import OptimizeRequest
from tradepilot.strategies.optimize.space import SearchSpace, check_grid, parse_space
from tradepilot.strategies.optimize.windows import WindowError, make_windows
from tradepilot.strategies.validation import plain_json

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

DEFAULT_TRIALS = 50


def optimization_not_found() -> NotFound:
    return NotFound("Optimization not found.", code="optimization_not_found")


@dataclass(frozen=True)
class OptimizationView:
    """An optimisation with what its job says (status, progress) while the job exists."""

    row: Optimization
    job: Job | None

    @property
    def status(self) -> str:
        return status_with_job(self.row.status, self.job)

    @property
    def error(self) -> str | None:
        return error_with_job(self.row.error, self.job)


def trials_for(space: SearchSpace, request: OptimizeRequest) -> int:
    """Trials per window: a grid's size (or fewer if asked), else the request's or 50."""
    if request.sampler == "grid":
        size = check_grid(space)
        return min(size, request.n_trials or size)
    return request.n_trials or DEFAULT_TRIALS


async def optimize_strategy(session: AsyncSession, runtime: Runtime, row: StrategyConfig,
                            request: OptimizeRequest) -> tuple[Optimization, int, int]:
    """Enqueue an optimisation of the configuration as it is now; returns it, its trials per
    window and the period's estimated bars."""
    space = parse_space(get_strategy(row.strategy), plain_json(request.space))
    n_trials = trials_for(space, request)
    start, end = backtest_period(request, runtime.clock.now())
    trading = trading_settings(request, runtime.settings)
    bars = estimated_bars(start, end, row.timeframe, len(row.symbols))
    try:
        make_windows(bars // len(row.symbols), request.walk_forward, request.in_sample)
    except WindowError as exc:
        raise Unprocessable(f"The period is too short: {exc}.", code="period_too_short") from None
    await _check_limits(session, row.user_id, bars, n_trials * request.walk_forward)
    opt_id = uuid.uuid4()
    job = await runtime.services["jobs"].enqueue(
        session, kind=OPTIMIZE_JOB, payload={"optimization_id": str(opt_id)}, user_id=row.user_id, max_attempts=2)
    stored_request = {"sampler": request.sampler, "n_trials": n_trials, "seed": request.seed,
                      "space": space.as_dict(), "objective": request.objective, "min_trades": request.min_trades,
                      "walk_forward": request.walk_forward, "in_sample": request.in_sample}
    opt = Optimization(id=opt_id, user_id=row.user_id, strategy_config_id=row.id, job_id=job.id,
                       strategy=row.strategy, params=dict(row.params), symbols=list(row.symbols),
                       timeframe=row.timeframe, period_start=start, period_end=end, settings=trading,
                       request=stored_request, study_prefix=f"tradepilot-opt-{opt_id}",
                       status=OptimizationStatus.QUEUED, created_at=runtime.clock.now())
    session.add(opt)
    await session.flush()
    return opt, n_trials, bars


async def _check_limits(session: AsyncSession, user_id: uuid.UUID, bars: int, trials: int) -> None:
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update(key_share=True)
                                .execution_options(populate_existing=True))
    assert user is not None  # authenticated just now
    limits = effective_limits(user.plan, dict(settings_of(user).limits))
    if bars > limits.backtest_bars:
        raise Unprocessable(f"Each trial would process up to {bars:,} bars; your plan allows {limits.backtest_bars:,}.",
                            code="backtest_too_large", extra={"limit": limits.backtest_bars, "estimated_bars": bars})
    if trials > limits.optimization_trials:
        raise Unprocessable(f"This optimisation would run {trials:,} trials (all windows); your plan allows "
                            f"{limits.optimization_trials:,}. Use fewer trials or windows.",
                            code="optimization_too_large", extra={"limit": limits.optimization_trials,
                                                                  "trials": trials})
    if await count_active_backtests(session, user_id) >= limits.concurrent_backtests:
        raise RateLimited(f"Your plan runs {limits.concurrent_backtests} backtests and optimisations at once; wait "
                          "for one to finish.", code="backtest_concurrency_limit",
                          headers={"Retry-After": CONCURRENCY_RETRY_AFTER},
                          extra={"limit": limits.concurrent_backtests})


async def views(session: AsyncSession, rows: list[Optimization]) -> list[OptimizationView]:
    ids = [r.job_id for r in rows]
    jobs = {j.id: j for j in await session.scalars(select(Job).where(Job.id.in_(ids)))} if ids else {}
    return [OptimizationView(r, jobs.get(r.job_id)) for r in rows]


async def list_optimizations(session: AsyncSession, row: StrategyConfig, *, limit: int,
                             cursor: str | None) -> tuple[list[OptimizationView], str | None]:
    """Newest first."""
    query = select(Optimization).where(Optimization.strategy_config_id == row.id)
    rows, next_cursor = await time_keyset_page(session, query, Optimization.created_at, Optimization.id,
                                               limit=limit, cursor=cursor)
    return await views(session, rows), next_cursor


async def cancel_optimization(session: AsyncSession, runtime: Runtime, opt: Optimization) -> OptimizationView:
    """Cancel a queued one at once, or ask a running one to stop (at its next batch of trials);
    409 ``optimization_finished`` once final."""
    job = await session.get(Job, opt.job_id)
    if opt.status in OptimizationStatus.FINAL or job is None or job.is_final:
        raise Conflict(f"The optimisation is {(await views(session, [opt]))[0].status}.",
                       code="optimization_finished")
    job = await jobs_service.cancel_job(session, job=job, clock=runtime.clock)
    if job.status == JobStatus.CANCELLED:
        opt.status, opt.error, opt.finished_at = OptimizationStatus.CANCELLED, "cancelled", runtime.clock.now()
    await session.flush()
    return OptimizationView(opt, job)
