"""The ``strategies.backtest`` job: candles from the store → the backtester → summary and report.

Runs wherever jobs run (the API process in embedded mode, ``tradepilot worker`` otherwise).
The simulation and the report are CPU work, so they run in a thread; the coroutine meanwhile
turns the backtester's progress callback into ``ctx.progress`` (the job's progress and
heartbeat). A cancellation requested through ``DELETE /api/jobs/{id}`` is passed into the
thread through that same callback, which then stops the simulation at its next chunk.

Progress: 0–10 % loading candles, 10–80 % simulating, 80–100 % writing the report.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tradepilot.jobs.registry import (
    JobCancelled,
    JobContext,
    JobLost,
    PermanentJobError,
    job_handler,
)
from tradepilot.jobs.service import safe_error
from tradepilot.market.store import CandleStore
from tradepilot.runtime import Runtime
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.backtest.report import write_report
from tradepilot.strategies.backtest.result import BacktestResult
from tradepilot.strategies.backtest.runner import BacktestError
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import Strategy, StrategyParamsError
from tradepilot.strategies.catalog import UnknownStrategy, build_strategy
from tradepilot.strategies.engine import BACKTEST_JOB, REPORTS_DIR, backtest_config, remove_folders
from tradepilot.strategies.models import BacktestRun, BacktestStatus

POLL_SECONDS = 0.2  # how often the simulation's progress is reported while it runs


class BacktestInputError(ValueError):
    """A backtest that can never run as stored (no candles, a strategy no longer installed)."""


class _Stopped(Exception):
    """Raised inside the simulation thread when the job was cancelled."""


@dataclass(frozen=True)
class Snapshot:
    """What the job needs of the row, read once (the row may be deleted meanwhile)."""

    id: uuid.UUID
    user_id: uuid.UUID
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    start: datetime
    end: datetime
    config: BacktestConfig

    @classmethod
    def of(cls, run: BacktestRun) -> Snapshot:
        return cls(run.id, run.user_id, run.strategy, dict(run.params), list(run.symbols), run.timeframe,
                   run.period_start, run.period_end, backtest_config(run.settings))

    @property
    def report_path(self) -> str:
        return f"{REPORTS_DIR}/{self.user_id}/{self.id}"


def candle_store(runtime: Runtime) -> CandleStore:
    """The market service's store when this process has one, else the configured venue's."""
    market = runtime.services.get("market")
    if market is not None:
        return market.candles  # type: ignore[no-any-return]
    from tradepilot.market.setup import configured_venue

    return CandleStore.for_settings(runtime.settings, configured_venue(runtime.settings))


def load_bars(store: CandleStore, symbols: list[str], timeframe: str, start: datetime, end: datetime) -> list[Bars]:
    """Each symbol's bars in ``[start, end)``, as the CLI reads them. Synchronous (a thread)."""
    series = []
    for symbol in symbols:
        frame = store.read(symbol, timeframe, start, end)
        if len(frame) < 2:
            raise BacktestInputError(f"{store.venue} {symbol} {timeframe}: {len(frame)} bars stored in the period; "
                                     "a backtest needs at least 2 (import or download candles first)")
        series.append(Bars.from_frame(symbol, frame))
    return series


def make_strategy(snap: Snapshot) -> Strategy:
    try:
        return build_strategy(snap.strategy, snap.params)
    except (UnknownStrategy, StrategyParamsError) as exc:
        raise BacktestInputError(str(exc)) from None


async def simulate(ctx: JobContext, strategy: Strategy, series: list[Bars], snap: Snapshot) -> BacktestResult:
    """``run_backtest`` in a thread, its progress reported as 10–80 % of the job."""
    done = [0.0]
    stop = threading.Event()

    def progress(fraction: float) -> None:
        done[0] = fraction
        if stop.is_set():
            raise _Stopped()

    task = asyncio.ensure_future(asyncio.to_thread(run_backtest, strategy, series, snap.config,
                                                   timeframe=snap.timeframe, progress=progress))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_SECONDS)
            await ctx.progress(0.1 + 0.7 * done[0], "simulating")
    except BaseException:
        stop.set()  # the thread stops at its next progress call; its _Stopped is not ours to see
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise
    try:
        return task.result()
    except BacktestError as exc:
        raise BacktestInputError(str(exc)) from None


async def _finish(runtime: Runtime, run_id: uuid.UUID, status: str, **values: Any) -> bool:
    """Record the outcome; False if the backtest was deleted meanwhile."""
    async with runtime.db.transaction() as session:
        run = await session.get(BacktestRun, run_id, with_for_update=True)
        if run is None:
            return False
        run.status = status
        run.finished_at = runtime.clock.now() if status in BacktestStatus.FINAL else None
        for name, value in values.items():
            setattr(run, name, value)
        return True


async def execute(ctx: JobContext, snap: Snapshot) -> dict[str, Any]:
    runtime = ctx.runtime
    strategy = make_strategy(snap)
    await ctx.progress(0.02, "loading candles")
    series = await asyncio.to_thread(load_bars, candle_store(runtime), snap.symbols, snap.timeframe, snap.start,
                                     snap.end)
    await ctx.progress(0.1, f"simulating {len(series[0])} bars")
    result = await simulate(ctx, strategy, series, snap)
    await ctx.progress(0.8, "writing the report")
    folder: Path = runtime.settings.data_dir / snap.report_path
    await asyncio.to_thread(write_report, result, folder)
    summary = result.summary()
    if not await _finish(runtime, snap.id, BacktestStatus.SUCCEEDED, summary=summary, bars=int(summary["bars"]),
                         report_path=snap.report_path, error=None):
        await asyncio.to_thread(remove_folders, [folder])  # deleted while it ran: leave no orphan files
    return {"backtest_id": str(snap.id), **{k: summary[k] for k in (
        "bars", "final_equity", "total_return", "sharpe", "max_drawdown", "trades")}}


@job_handler(BACKTEST_JOB, timeout_seconds=3600)
async def run_backtest_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any] | None:
    """One backtest; failures of the input are permanent (retrying cannot help)."""
    runtime = ctx.runtime
    run_id = uuid.UUID(str(payload["backtest_id"]))
    async with runtime.db.transaction() as session:
        run = await session.get(BacktestRun, run_id, with_for_update=True)
        if run is None:
            return {"backtest_id": str(run_id), "skipped": "the backtest was deleted"}
        run.status = BacktestStatus.RUNNING
        snap = Snapshot.of(run)
    try:
        return await execute(ctx, snap)
    except BacktestInputError as exc:
        await _finish(runtime, run_id, BacktestStatus.FAILED, error=str(exc))
        raise PermanentJobError(str(exc)) from None
    except JobLost:
        raise  # another worker runs it now
    except JobCancelled:
        await _finish(runtime, run_id, BacktestStatus.CANCELLED, error="cancelled")
        raise
    except Exception as exc:
        if ctx.is_last_attempt:
            await _finish(runtime, run_id, BacktestStatus.FAILED, error=safe_error(exc))
        raise
