"""The supervisor: in every process, competes for the lease of each running strategy.

Every ``strategy_runs_poll_seconds`` (and at once when a ``strategy_run.*`` event arrives on
the bus) it reads the running runs and, for each one it is not already after, starts
``lease_manager.run_while_held("strategy-run:<id>", work)``. Exactly one process holds a
run's lease and runs it (:class:`~tradepilot.strategies.runs.runner.LiveRunner`); the others
keep trying, so when the holder dies (its advisory lock vanishes with its connection, or its
TTL row expires) one of them takes over and resumes from the run's ``last_bar_at``. The work
ends, and the lease is released, when the run is no longer running (stopped, failed,
suspended) — the other processes then acquire it, see that, and give up too.

Runs are woken by closed bars: a ``market.candle`` event of one of their symbols (the feed
owner publishes a bar when it closes) wakes them before the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from tradepilot.core.events import Event, Topics
from tradepilot.core.lease import Lease, lease_manager
from tradepilot.market import payloads
from tradepilot.strategies.runs.models import RunStatus, StrategyRun
from tradepilot.strategies.runs.runner import LiveRunner, lease_name
from tradepilot.strategies.runs.service import EVENT_KIND

if TYPE_CHECKING:
    from tradepilot.core.bus import Subscription
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.strategies.runs")

SERVICE_KEY = "strategy_runs"
STOP_TIMEOUT = 15.0


class Supervisor:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.tasks: dict[uuid.UUID, asyncio.Task[None]] = {}  # runs this process competes for
        self.running: dict[uuid.UUID, asyncio.Event] = {}  # runs this process holds: their wake-up
        self.steps = 0  # steps taken by this process's runners (tests wait on it)
        self._wake = asyncio.Event()
        self._subs: list[Subscription] = []
        self._loop: asyncio.Task[None] | None = None

    def holds(self, run_id: uuid.UUID | str) -> bool:
        """True while this process runs ``run_id``."""
        return uuid.UUID(str(run_id)) in self.running

    async def start(self) -> None:
        bus = self.runtime.bus
        self._subs.append(await bus.subscribe(Topics.all_user(EVENT_KIND), self._on_run_event))
        self._subs.append(await bus.subscribe(payloads.pattern(payloads.CANDLE), self._on_candle))
        self._loop = asyncio.create_task(self._watch(), name="strategy-runs-supervisor")

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        tasks = [t for t in (self._loop, *self.tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                logger.warning("strategy runs did not stop in time; leaving them behind")
        self.tasks.clear()

    def wake(self) -> None:
        """Look for new runs and new bars now (an event, a test)."""
        self._wake.set()
        for event in self.running.values():
            event.set()

    async def _on_run_event(self, event: Event) -> None:
        self.wake()

    async def _on_candle(self, event: Event) -> None:
        if event.payload.get("closed", True) is not False:
            for wake in self.running.values():
                wake.set()

    # -- discovering runs ---------------------------------------------------------------------

    async def _watch(self) -> None:
        poll = self.runtime.settings.strategy_runs_poll_seconds
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading running strategies failed", exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)
            for wake in self.running.values():
                wake.set()  # each held run looks for closed bars at least this often

    async def refresh(self) -> None:
        async with self.runtime.db.read() as session:
            ids = list(await session.scalars(select(StrategyRun.id).where(StrategyRun.status == RunStatus.RUNNING)))
        manager = lease_manager(self.runtime)
        retry = min(1.0, self.runtime.settings.strategy_runs_poll_seconds)
        for run_id in ids:
            task = self.tasks.get(run_id)
            if task is not None and not task.done():
                continue
            self.tasks[run_id] = asyncio.create_task(
                manager.run_while_held(lease_name(run_id), lambda lease, rid=run_id: self._run(rid, lease),
                                       retry_every=retry),
                name=f"strategy-run-{run_id}")
        for run_id in [r for r, t in self.tasks.items() if t.done()]:
            del self.tasks[run_id]

    # -- running one (under its lease) --------------------------------------------------------

    async def _run(self, run_id: uuid.UUID, lease: Lease) -> None:
        runner = LiveRunner(self.runtime, run_id, lease)
        wake = self.running[run_id] = asyncio.Event()
        logger.info("strategy run held", extra={"run_id": str(run_id), "token": lease.token})
        try:
            while True:
                wake.clear()
                if not await runner.step():
                    return
                self.steps += 1
                await wake.wait()
        finally:
            if self.running.get(run_id) is wake:
                del self.running[run_id]


async def start_strategy_runs(runtime: Runtime) -> Supervisor | None:
    """From the app lifespan, after the market and matching."""
    if not runtime.settings.strategy_runs_enabled or "market" not in runtime.services:
        return None
    supervisor = Supervisor(runtime)
    await supervisor.start()
    runtime.services[SERVICE_KEY] = supervisor
    return supervisor


async def stop_strategy_runs(runtime: Runtime) -> None:
    supervisor: Supervisor | None = runtime.services.pop(SERVICE_KEY, None)
    if supervisor is not None:
        await supervisor.stop()
