"""The signal follower: one process (lease ``signals-tracker``) moves signals along their lifecycle.

Each step reads the signals still moving — active ones, and triggered ones whose horizon
return is not measured yet — reads the closed bars of their symbols since the oldest of them
from the candle store (overlaid with the live bars), applies :func:`lifecycle.evaluate`, and
writes what changed in one transaction fenced by the lease token, with the events. It steps
every ``signals_tracker_seconds`` and at once when a signal is created; the rules are a pure
function of the bars, so a step repeated by a new holder after a crash writes nothing new.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from tradepilot.core.events import Event, Topics
from tradepilot.core.lease import Lease, lease_manager
from tradepilot.jobs.periodic import Periodic
from tradepilot.market.types import TIMEFRAMES, Bar
from tradepilot.signals import constants as k
from tradepilot.signals.constants import SignalStatus
from tradepilot.signals.lifecycle import SignalView, evaluate
from tradepilot.signals.models import Signal
from tradepilot.signals.service import signals_of

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.signals")
STOP_TIMEOUT = 10.0


def view(signal: Signal) -> SignalView:
    return SignalView(side=signal.side, entry=signal.entry, stop_loss=signal.stop_loss,
                      take_profit=signal.take_profit, horizon=signal.horizon, created_at=signal.created_at,
                      expires_at=signal.expires_at, triggered_at=signal.triggered_at,
                      trigger_price=signal.trigger_price)


class SignalTracker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.lease: Lease | None = None
        self.ready = asyncio.Event()
        self.steps = 0  # completed steps (tests wait on it)
        self._lock = asyncio.Lock()
        self._periodic: Periodic | None = None

    async def run(self, lease: Lease) -> None:
        periodic = Periodic("signals-tracker", self.step, self.runtime.settings.signals_tracker_seconds)
        subscription = await self.runtime.bus.subscribe(Topics.all_user(k.TOPIC_KIND), self._on_event)
        self.lease, self._periodic = lease, periodic
        try:
            periodic.start()
            periodic.wake()
            self.ready.set()
            await asyncio.Event().wait()  # until the lease is lost or the tracker stopped
        finally:
            self.ready.clear()
            await subscription.close()
            await periodic.stop()
            self.lease, self._periodic = None, None

    async def _on_event(self, event: Event) -> None:
        if event.type == k.SIGNAL_CREATED and self._periodic is not None:
            self._periodic.wake()

    async def step(self) -> int:
        """Follow every moving signal once; how many changed."""
        async with self._lock:
            changed = await self._step()
            self.steps += 1
            return changed

    async def _step(self) -> int:
        now = self.runtime.clock.now()
        groups = await self._groups()
        if not groups:
            return 0
        oldest: dict[tuple[str, str], datetime] = {}
        for symbol, timeframe, created_at in groups:
            key = (symbol, timeframe)
            oldest[key] = min(oldest.get(key, created_at), created_at)
        bars: dict[tuple[str, str], list[Bar]] = {}
        market = self.runtime.services.get("market")
        if market is None:
            return 0
        for (symbol, timeframe), since in oldest.items():
            step = timedelta(seconds=TIMEFRAMES[timeframe])
            bars[(symbol, timeframe)] = [b for b in await market.read_candles(symbol, timeframe, start=since - step,
                                                                               end=now) if b.closed]
        return await self._write(bars, now)

    async def _groups(self) -> list[tuple[str, str, datetime]]:
        async with self.runtime.db.read() as session:
            result = await session.execute(
                select(Signal.symbol, Signal.timeframe, Signal.created_at).where(or_(
                    Signal.status == SignalStatus.ACTIVE,
                    (Signal.status == SignalStatus.TRIGGERED) & Signal.evaluated_at.is_(None))))
            return [(r[0], r[1], r[2]) for r in result.all()]

    async def _write(self, bars: dict[tuple[str, str], list[Bar]], now: datetime) -> int:
        service = signals_of(self.runtime)
        changed = 0
        async with self.runtime.db.transaction() as session:
            if self.lease is not None:
                await self.lease.assert_held(session)
            moving = await session.scalars(select(Signal).where(or_(
                Signal.status == SignalStatus.ACTIVE,
                (Signal.status == SignalStatus.TRIGGERED) & Signal.evaluated_at.is_(None))).with_for_update())
            for signal in list(moving):
                series = bars.get((signal.symbol, signal.timeframe), [])
                found = evaluate(view(signal), series, now, timedelta(seconds=TIMEFRAMES[signal.timeframe]))
                if await service.record(session, signal, found):
                    changed += 1
        return changed


async def start_signal_tracker(runtime: Runtime) -> SignalTracker | None:
    """Compete for the ``signals-tracker`` lease (from the app lifespan, after the market)."""
    if not runtime.settings.signals_tracker_enabled:
        return None
    tracker = SignalTracker(runtime)
    task = asyncio.create_task(lease_manager(runtime).run_while_held(k.LEASE_NAME, tracker.run),
                               name="signals-tracker")
    runtime.services[k.TRACKER_KEY] = tracker
    runtime.services[k.TRACKER_KEY + "_task"] = task
    return tracker


async def stop_signal_tracker(runtime: Runtime) -> None:
    task: asyncio.Task[None] | None = runtime.services.pop(k.TRACKER_KEY + "_task", None)
    runtime.services.pop(k.TRACKER_KEY, None)
    if task is None:
        return
    task.cancel()
    _, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if pending:
        logger.warning("signals tracker did not stop in time; leaving it behind")
