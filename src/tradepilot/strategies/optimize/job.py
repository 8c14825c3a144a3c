"""The optimisation jobs: ``strategies.optimize`` (one per optimisation) and, with a shared
study on PostgreSQL, ``strategies.optimize.trials`` helpers.

The optimisation job loads the candles, then runs the :class:`~.run.Optimizer` in a thread
(its trials on a process pool) while the coroutine turns its progress into ``ctx.progress``;
a cancellation (``POST …/optimizations/{oid}/cancel`` or ``DELETE /api/jobs/{id}``) is passed
into the thread and stops it after the batch of trials in flight. With PostgreSQL and
``optimize_shards`` > 1, each window's study is opened first and ``shards - 1`` helper jobs
are enqueued for it: whichever ``tradepilot worker`` picks them up adds trials to the same
study until it holds the window's budget or the optimisation marks it stopped.

Progress: 0–2 % loading candles, then the windows' trials in equal shares.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tradepilot.jobs.registry import (
    JobCancelled,
    JobContext,
    JobLost,
    PermanentJobError,
    job_handler,
)
from tradepilot.jobs.service import safe_error
from tradepilot.runtime import Runtime
from tradepilot.strategies.backtest_job import BacktestInputError, candle_store, load_bars
from tradepilot.strategies.catalog import UnknownStrategy, get_strategy
from tradepilot.strategies.engine import OPTIMIZE_JOB, backtest_config
from tradepilot.strategies.optimize.evaluate import Problem
from tradepilot.strategies.optimize.models import Optimization, OptimizationStatus
from tradepilot.strategies.optimize.pool import TrialPool, worker_count
from tradepilot.strategies.optimize.run import Optimizer, OptimizeSpec, study_name
from tradepilot.strategies.optimize.space import parse_space
from tradepilot.strategies.optimize.study import (
    close_storage,
    is_shared,
    make_sampler,
    open_storage,
    open_study,
    run_trials,
)
from tradepilot.strategies.optimize.windows import WindowError, make_windows

TRIALS_JOB = "strategies.optimize.trials"
POLL_SECONDS = 0.2
T = TypeVar("T")


class _Stopped(Exception):
    """Raised inside the optimiser's thread when the job was cancelled."""


@dataclass(frozen=True)
class Snapshot:
    id: uuid.UUID
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    period: tuple[Any, Any]
    settings: dict[str, Any]
    request: dict[str, Any]
    study_prefix: str

    @classmethod
    def of(cls, row: Optimization) -> Snapshot:
        return cls(row.id, row.strategy, dict(row.params), list(row.symbols), row.timeframe,
                   (row.period_start, row.period_end), dict(row.settings), dict(row.request), row.study_prefix)

    def spec(self) -> OptimizeSpec:
        r = self.request
        try:
            space = parse_space(get_strategy(self.strategy), r["space"])
        except UnknownStrategy as exc:
            raise BacktestInputError(str(exc)) from None
        return OptimizeSpec(r["sampler"], int(r["n_trials"]), int(r["seed"]), r["objective"], int(r["min_trades"]),
                            int(r["walk_forward"]), float(r["in_sample"]), space)


def worker_label(ctx: JobContext) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{ctx.job_id}"


async def _load(runtime: Runtime, opt_id: uuid.UUID, *, start: bool) -> Snapshot | None:
    async with runtime.db.transaction() as session:
        row = await session.get(Optimization, opt_id, with_for_update=True)
        if row is None or row.status in OptimizationStatus.FINAL:
            return None
        if start:
            row.status = OptimizationStatus.RUNNING
        return Snapshot.of(row)


async def _problem(runtime: Runtime, snap: Snapshot, spec: OptimizeSpec) -> Problem:
    series = await asyncio.to_thread(load_bars, candle_store(runtime), snap.symbols, snap.timeframe, *snap.period)
    return Problem(snap.strategy, snap.params, series, backtest_config(snap.settings), spec.objective,
                   spec.min_trades, snap.timeframe)


async def _in_thread(ctx: JobContext, work: Callable[[Callable[[float, str], None]], T]) -> T:
    """``work(progress)`` in a thread; its progress reported to the job, cancellation passed in."""
    state: list[Any] = [0.0, "starting"]
    stop = threading.Event()

    def progress(fraction: float, message: str) -> None:
        state[0], state[1] = fraction, message
        if stop.is_set():
            raise _Stopped()

    task = asyncio.ensure_future(asyncio.to_thread(work, progress))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_SECONDS)
            await ctx.progress(0.02 + 0.97 * state[0], state[1])
    except BaseException:
        stop.set()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise
    return task.result()


async def _finish(runtime: Runtime, opt_id: uuid.UUID, status: str, **values: Any) -> None:
    async with runtime.db.transaction() as session:
        row = await session.get(Optimization, opt_id, with_for_update=True)
        if row is None:
            return
        row.status = status
        row.finished_at = runtime.clock.now()
        for name, value in values.items():
            setattr(row, name, value)


async def execute(ctx: JobContext, snap: Snapshot) -> dict[str, Any]:
    runtime = ctx.runtime
    spec = snap.spec()
    await ctx.progress(0.0, "loading candles")
    problem = await _problem(runtime, snap, spec)
    storage = await asyncio.to_thread(open_storage, runtime.settings.database_url)
    loop = asyncio.get_running_loop()
    shards = runtime.settings.optimize_shards if is_shared(storage) else 1

    async def enqueue_helpers(window: int) -> None:
        async with runtime.db.transaction() as session:
            for shard in range(1, shards):
                await runtime.services["jobs"].enqueue(
                    session, kind=TRIALS_JOB, user_id=ctx.user_id, max_attempts=1,
                    payload={"optimization_id": str(snap.id), "window": window, "shard": shard})

    def window_started(window: int) -> None:
        if shards > 1:
            asyncio.run_coroutine_threadsafe(enqueue_helpers(window), loop).result()

    try:
        optimizer = Optimizer(problem, spec, storage, snap.study_prefix, workers=1,
                              worker_label=worker_label(ctx), window_started=window_started)
        first = optimizer.windows()[0]
        optimizer.workers = worker_count(runtime.settings.optimize_workers, first.in_sample_bars, spec.n_trials)

        def work(progress: Callable[[float, str], None]) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
            optimizer.progress = progress
            return optimizer.run()

        report, trials = await _in_thread(ctx, work)
    except WindowError as exc:
        raise BacktestInputError(f"the stored candles are too few: {exc}") from None
    finally:
        await asyncio.to_thread(close_storage, storage)
    report["workers"] = optimizer.workers
    await _finish(runtime, snap.id, OptimizationStatus.SUCCEEDED, report=report, trials=trials, error=None)
    return {"optimization_id": str(snap.id), "best_params": report["best_params"],
            "aggregate": report["aggregate"]}


@job_handler(OPTIMIZE_JOB, timeout_seconds=6 * 3600)
async def run_optimization_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any] | None:
    """One optimisation; failures of the input are permanent (retrying cannot help)."""
    runtime = ctx.runtime
    opt_id = uuid.UUID(str(payload["optimization_id"]))
    snap = await _load(runtime, opt_id, start=True)
    if snap is None:
        return {"optimization_id": str(opt_id), "skipped": "the optimisation was deleted or is final"}
    try:
        return await execute(ctx, snap)
    except BacktestInputError as exc:
        await _finish(runtime, opt_id, OptimizationStatus.FAILED, error=str(exc))
        raise PermanentJobError(str(exc)) from None
    except JobLost:
        raise
    except JobCancelled:
        await _finish(runtime, opt_id, OptimizationStatus.CANCELLED, error="cancelled")
        raise
    except Exception as exc:
        if ctx.is_last_attempt:
            await _finish(runtime, opt_id, OptimizationStatus.FAILED, error=safe_error(exc))
        raise


@job_handler(TRIALS_JOB, timeout_seconds=6 * 3600)
async def run_trials_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any] | None:
    """A helper: trials of one window of a shared (PostgreSQL) study, until its budget is spent."""
    runtime = ctx.runtime
    opt_id, window, shard = uuid.UUID(str(payload["optimization_id"])), int(payload["window"]), int(payload["shard"])
    snap = await _load(runtime, opt_id, start=False)
    if snap is None:
        return {"optimization_id": str(opt_id), "skipped": "the optimisation was deleted or is final"}
    try:
        spec = snap.spec()
        problem = await _problem(runtime, snap, spec)
    except BacktestInputError as exc:
        raise PermanentJobError(str(exc)) from None
    storage = await asyncio.to_thread(open_storage, runtime.settings.database_url)
    try:
        if not is_shared(storage):
            raise PermanentJobError("helpers need a shared (PostgreSQL) study")
        bounds = make_windows(len(problem.series[0]), spec.windows, spec.in_sample)[window]
        sampler = make_sampler(spec.sampler, spec.space, spec.seed + window + 1_000_003 * shard)

        def work(progress: Callable[[float, str], None]) -> int:
            study = open_study(storage, study_name(snap.study_prefix, window), sampler)
            workers = worker_count(runtime.settings.optimize_workers, bounds.in_sample_bars, spec.n_trials)
            n = spec.n_trials
            with TrialPool(problem, workers) as pool:
                return run_trials(study, spec.space, pool, bounds.in_sample, n, worker=worker_label(ctx),
                                  shared=True, after_batch=lambda done: progress(
                                      min(done, n) / n, f"window {window + 1}: {done} trials"))

        ran = await _in_thread(ctx, work)
    finally:
        await asyncio.to_thread(close_storage, storage)
    return {"optimization_id": str(opt_id), "window": window, "trials": ran}
