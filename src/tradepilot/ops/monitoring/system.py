"""``MonitoringSystem`` (the plan's): metrics, request and trading-activity tracking, health,
alerting on errors, uptime reports and performance — one per process, in
``runtime.services["monitoring"]``.

Its loops run on wall time; every timestamp comes from the runtime clock, and each step is a
method (``beat``, ``sample``, ``evaluate``) that tests call after moving a test clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.multiprocess import mark_process_dead
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.metrics import exposed_registry, multiprocess
from tradepilot.ops.monitoring import rules as r
from tradepilot.ops.monitoring.errors import ErrorTracker
from tradepilot.ops.monitoring.logbook import RingLogHandler, attach_ring, detach_ring
from tradepilot.ops.monitoring.models import MonitoringRule
from tradepilot.ops.monitoring.readings import Snapshot, Window, take_snapshot, window_between
from tradepilot.ops.monitoring.uptime import Heartbeat, live_replicas, new_replica_id

if TYPE_CHECKING:
    from tradepilot.jobs.periodic import Periodic
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ops.monitoring")

SERVICE_KEY = "monitoring"
KEEP_SNAPSHOTS = timedelta(hours=1, minutes=5)  # the longest rule window is an hour
LOOP_LAG_PROBE_SECONDS = 0.5
PERFORMANCE_LOG_EVERY = timedelta(minutes=1)


class MonitoringSystem:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.clock = runtime.clock
        self.metrics = runtime.metrics
        self.replica_id = new_replica_id()
        self.started_at = self.clock.now()
        self.started_monotonic = time.monotonic()
        settings = runtime.settings
        self.heartbeat = Heartbeat(runtime.db, self.clock, replica_id=self.replica_id,
                                   interval=settings.monitoring_heartbeat_seconds)
        self.logs = RingLogHandler()
        self.errors = ErrorTracker(runtime.db, self.clock, runtime.metrics)
        self.snapshots: deque[Snapshot] = deque()
        self.last_trade_at: datetime | None = None
        self.component_errors: dict[str, tuple[str, datetime]] = {}  # component → (last error, when)
        self._loops: list[Periodic] = []
        self._lag_task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._performance_logged_at: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        from tradepilot.jobs.periodic import Periodic

        attach_ring(self.logs, self.runtime.settings.log_level)
        logging.getLogger().addHandler(self.errors)
        market = self.runtime.services.get("market")
        if market is not None:
            self._unsubscribe = market.subscribe_trades(self.track_trade)
        self.sample()
        if not self.runtime.settings.monitoring_enabled:
            return
        await self._safely(self.beat)
        settings = self.runtime.settings
        self._loops = [Periodic("ops-heartbeat", self.beat, settings.monitoring_heartbeat_seconds),
                       Periodic("ops-monitoring", self.tick, settings.monitoring_sample_seconds)]
        for loop in self._loops:
            loop.start()
        self._lag_task = asyncio.create_task(self._measure_loop_lag(), name="ops-loop-lag")

    async def stop(self) -> None:
        """Persist what this process holds: error counts, and the clean end of its uptime segment."""
        for loop in self._loops:
            await loop.stop()
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
        logging.getLogger().removeHandler(self.errors)
        await self._safely(self.errors.persist)
        if self.runtime.settings.monitoring_enabled:
            await self._safely(self.heartbeat.stop)
        detach_ring(self.logs)
        if multiprocess():  # its live gauges leave the sums; its counters stay counted
            mark_process_dead(os.getpid())

    async def _safely(self, step: Any) -> None:
        try:
            await step()
        except Exception:
            logger.warning("monitoring step %s failed", getattr(step, "__name__", step), exc_info=True)

    # -- steps ----------------------------------------------------------------------------

    async def beat(self) -> None:
        await self.heartbeat.beat()

    async def tick(self) -> None:
        """Sample the metrics, persist error counts, refresh gauges, evaluate the alert rules,
        and once a minute log a performance line (rates, error rate, latency, loop lag)."""
        await self.refresh_gauges()
        self.sample()
        await self.errors.persist()
        await self.evaluate()
        now = self.clock.now()
        if self._performance_logged_at is None or now - self._performance_logged_at >= PERFORMANCE_LOG_EVERY:
            self._performance_logged_at = now
            self.log_performance()

    def log_performance(self) -> None:
        window = self.window(int(PERFORMANCE_LOG_EVERY.total_seconds()))
        p95 = window.overall_latency().quantile(0.95)
        logger.info("performance", extra={
            "requests_per_second": None if window.request_rate is None else round(window.request_rate, 3),
            "error_rate": None if window.error_rate is None else round(window.error_rate, 4),
            "p95_ms": None if p95 is None else round(p95 * 1000, 2),
            "event_loop_lag_ms": round(self.snapshots[-1].value("tradepilot_event_loop_lag_seconds") * 1000, 2),
            "window_seconds": window.seconds})

    def sample(self) -> Snapshot:
        snapshot = take_snapshot(exposed_registry(self.metrics), self.clock.now())
        self.snapshots.append(snapshot)
        while len(self.snapshots) > 2 and snapshot.at - self.snapshots[1].at > KEEP_SNAPSHOTS:
            self.snapshots.popleft()
        return snapshot

    async def refresh_gauges(self) -> None:
        from sqlalchemy import func, select

        from tradepilot.jobs.models import Job, JobStatus

        pool = self.runtime.db.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        if callable(checked_out):
            self.metrics.db_pool_in_use.set(checked_out())
        async with self.runtime.db.read() as session:
            queued = await session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED))
            await session.rollback()
        self.metrics.job_queue_depth.set(int(queued or 0))

    def window(self, seconds: float) -> Window:
        """What happened in the last ``seconds`` (from the newest snapshot at or before its start)."""
        now = self.sample()
        start = now.at - timedelta(seconds=seconds)
        baseline = None
        for snap in self.snapshots:
            if snap.at <= start:
                baseline = snap
        if baseline is None and len(self.snapshots) > 1:
            baseline = self.snapshots[0]
        return window_between(baseline if baseline is not now else None, now)

    # -- tracking -------------------------------------------------------------------------

    def track_trade(self, _trade: object) -> None:
        self.last_trade_at = self.clock.now()

    def track_order(self, order_type: str, side: str) -> None:
        """An order the API accepted (counted after its transaction committed)."""
        self.metrics.orders.labels(order_type, side).inc()

    def note_component_error(self, component: str, error: str) -> None:
        self.component_errors[component] = (error, self.clock.now())

    # -- measurements ---------------------------------------------------------------------

    async def measure(self, metric: str, window_seconds: int) -> float | None:
        if metric == r.ERROR_RATE:
            return self.window(window_seconds).error_rate
        if metric == r.LATENCY_P95:
            p95 = self.window(window_seconds).overall_latency().quantile(0.95)
            return None if p95 is None else p95 * 1000
        if metric == r.FEED_STALENESS:
            return self.feed_staleness()
        if metric == r.DISK_FREE:
            return disk_free_percent(Path(self.runtime.settings.data_dir))
        if metric == r.BACKUP_AGE:
            newest = await self.newest_backup_at()
            return float("inf") if newest is None else (self.clock.now() - newest).total_seconds() / 3600
        raise ValueError(f"unknown metric {metric}")

    def feed_staleness(self) -> float | None:
        if self.last_trade_at is None:
            return (self.clock.now() - self.started_at).total_seconds()
        return (self.clock.now() - self.last_trade_at).total_seconds()

    async def newest_backup_at(self) -> datetime | None:
        from tradepilot.ops.backup.setup import backup_service

        records = await asyncio.to_thread(backup_service(self.runtime).store.list)
        return max((rec.created_at for rec in records), default=None)

    async def evaluate(self) -> list[tuple[str, str]]:
        now = self.clock.now()
        replicas = {row.replica_id for row in await live_replicas(
            self.runtime.db, now=now, interval=self.runtime.settings.monitoring_heartbeat_seconds)}
        return await r.evaluate_rules(self.runtime.db, now=now, replica_id=self.replica_id,
                                      live_replicas=replicas | {self.replica_id}, measure=self.measure,
                                      notify=self.notify_admins)

    async def notify_admins(self, session: AsyncSession, rule: MonitoringRule, state: str, value: float,
                            now: datetime) -> None:
        """One notification per active admin, in the transaction that moved the rule's state."""
        from tradepilot.notifications import constants as nc
        from tradepilot.notifications.service import notifications_of
        from tradepilot.notifications.sources import Draft

        title, body = r.describe(rule, state, value)
        draft = Draft(category=nc.ALERTS, title=title, body=body,
                      data={"kind": "monitoring", "rule_id": str(rule.id), "rule": rule.name, "metric": rule.metric,
                            "state": state, "value": None if value == float("inf") else value})
        service = notifications_of(self.runtime)
        for admin in await r.active_admins(session):
            await service.create(session, user=admin, draft=draft, now=now)
        logger.warning("monitoring rule %s", state, extra={"rule": rule.name, "metric": rule.metric, "value": value})

    async def _measure_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LOOP_LAG_PROBE_SECONDS)
            self.metrics.event_loop_lag.set(max(loop.time() - started - LOOP_LAG_PROBE_SECONDS, 0.0))


def disk_free_percent(path: Path) -> float:
    for candidate in (path, *path.resolve().parents):
        if candidate.exists():
            usage = shutil.disk_usage(candidate)
            return usage.free / usage.total * 100
    raise FileNotFoundError(path)


def monitoring_of(runtime: Runtime) -> MonitoringSystem:
    system = runtime.services.get(SERVICE_KEY)
    if system is None:
        system = runtime.services[SERVICE_KEY] = MonitoringSystem(runtime)
    return system  # type: ignore[no-any-return]


async def start_monitoring(runtime: Runtime) -> None:
    await monitoring_of(runtime).start()


async def stop_monitoring(runtime: Runtime) -> None:
    system = runtime.services.get(SERVICE_KEY)
    if system is not None:
        await system.stop()
