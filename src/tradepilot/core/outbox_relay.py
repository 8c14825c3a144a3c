"""The outbox relay: publishes committed outbox events to the bus, at least once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update

from tradepilot.core.bus import InProcessBus, Subscription
from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost, LeaseManager, lease_manager
from tradepilot.core.outbox import (
    BATCH_SIZE,
    PRUNE_EVERY_SECONDS,
    RELAY_LEASE,
    RETENTION,
    WAKE_TOPIC,
    register_waker,
    row_to_event,
)
from tradepilot.core.outbox_models import ConsumedEvent, OutboxEvent

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.outbox")

BACKLOG_EVERY_SECONDS = 1.0  # the backlog gauge is re-counted at most this often (a count per pass cost ~4% of an order)


_UNPUBLISHED = (select(OutboxEvent).where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.created_at, OutboxEvent.id))


class OutboxRelay:
    """Publishes committed events to ``runtime.bus``; only the ``outbox-relay`` lease holder runs.

    ``relay_once`` may also be called directly (tests, tools): without the lease it still
    works, and duplicates are harmless because delivery is at least once anyway.
    """

    def __init__(self, runtime: Runtime, *, batch_size: int = BATCH_SIZE,
                 retention: timedelta = RETENTION,
                 prune_every: float = PRUNE_EVERY_SECONDS, leases: LeaseManager | None = None,
                 lease_name: str = RELAY_LEASE) -> None:
        self.runtime = runtime
        self.batch_size = batch_size
        self.retention = retention
        self.prune_every = prune_every
        self.lease_name = lease_name
        self._leases = leases
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._lease: Lease | None = None
        self._wake_sub: Subscription | None = None
        self._hint: asyncio.Task[None] | None = None
        self._hint_again = False
        self._stopping = False
        self._backlog_at = float("-inf")  # when the backlog gauge was last counted (monotonic)

    @property
    def is_holder(self) -> bool:
        return self._lease is not None and self._lease.held

    async def start(self) -> None:
        if self._task is not None:
            return
        leases = self._leases or lease_manager(self.runtime)
        register_waker(self.runtime.db.engine.sync_engine, self.wake)
        if not isinstance(self.runtime.bus, InProcessBus):
            self._wake_sub = await self.runtime.bus.subscribe(WAKE_TOPIC, self._on_hint)
        self._task = asyncio.create_task(
            leases.run_while_held(self.lease_name, self._run, retry_every=1.0), name="outbox-relay")

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Stop relaying. A pass in progress is finished first (up to ``timeout`` seconds), so
        a redeploy does not deliver its batch twice; then the lease is released."""
        register_waker(self.runtime.db.engine.sync_engine, None)
        if self._wake_sub is not None:
            await self._wake_sub.close()
            self._wake_sub = None
        self._stopping = True
        self._wake.set()
        if self._task is not None and self.is_holder:
            await asyncio.wait({self._task}, timeout=timeout)
        for task in (self._task, self._hint):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._hint = None

    def wake(self) -> None:
        """Something was committed: relay now rather than at the next poll.

        On a replica that does not hold the relay lease, a hint goes over the bus to the one
        that does (coalesced: at most one in flight).
        """
        self._wake.set()
        if self._task is None or self.is_holder or self._wake_sub is None:
            return
        if self._hint is not None and not self._hint.done():
            self._hint_again = True
            return
        self._hint = asyncio.get_running_loop().create_task(self._send_hint())

    async def _send_hint(self) -> None:
        while True:
            self._hint_again = False
            try:
                hint = Event(topic=WAKE_TOPIC, type="outbox.wake", payload={})
                await self.runtime.bus.publish(hint)
            except Exception:
                logger.debug("outbox wake hint not sent", exc_info=True)
            if not self._hint_again:
                return

    async def _on_hint(self, _event: Event) -> None:
        self._wake.set()

    async def _run(self, lease: Lease) -> None:
        """Work under the lease: relay, prune now and then, wait for a wake-up or the poll."""
        self._lease = lease
        poll = self.runtime.settings.outbox_poll_seconds
        next_prune = time.monotonic()
        backoff = poll
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.relay_once()
                    if time.monotonic() >= next_prune:
                        await self.prune()
                        next_prune = time.monotonic() + self.prune_every
                    backoff = poll
                except LeaseLost:
                    raise  # lease.lost is set: run_while_held stops us and competes again
                except Exception:
                    logger.exception("outbox relay pass failed")
                    backoff = min(backoff * 2, 10.0)
                    await asyncio.sleep(backoff)
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=poll)
        finally:
            self._lease = None

    async def relay_once(self) -> int:
        """Publish every event unpublished right now, in batches; returns how many."""
        total = 0
        async with self._pass_lock:
            try:
                while True:
                    count = await self._relay_batch()
                    total += count
                    if count < self.batch_size:
                        break
            finally:
                if total:
                    self.runtime.metrics.outbox_published.inc(total)
                await self._measure_backlog()
        return total

    async def _measure_backlog(self) -> None:
        """Refresh the backlog gauge, at most every ``BACKLOG_EVERY_SECONDS`` (a scrape is ~15 s)."""
        if time.monotonic() - self._backlog_at < BACKLOG_EVERY_SECONDS:
            return
        self._backlog_at = time.monotonic()
        with contextlib.suppress(Exception):
            self.runtime.metrics.outbox_backlog.set(await self.backlog())

    async def _relay_batch(self) -> int:
        async with self.runtime.db.read() as session:  # a snapshot: SQLite's write lock is not taken to read
            rows = (await session.execute(_UNPUBLISHED.limit(self.batch_size))).scalars().all()
            events = [row_to_event(row) for row in rows]
            await session.rollback()
        if not events:
            return 0
        # Publish outside any transaction (SQLite would otherwise hold its write lock),
        # then mark what was published. A crash in between means a second delivery, never
        # a lost one.
        published: list[str] = []
        try:
            for event in events:
                await self.runtime.bus.publish(event)
                published.append(event.id)
                self.runtime.metrics.outbox_events.labels(event.type).inc()
        finally:
            if published:
                await self._mark_published(published)
        return len(published)

    async def _mark_published(self, ids: list[str]) -> None:
        lease = self._lease
        async with self.runtime.db.transaction() as session:
            if lease is not None:
                await lease.assert_held(session)
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids), OutboxEvent.published_at.is_(None))
                .values(published_at=self.runtime.clock.now())
                .execution_options(synchronize_session=False)
            )

    async def backlog(self, *, cap: int = 100_000) -> int:
        """Unpublished events (counted up to ``cap``, so a huge backlog stays cheap to watch)."""
        pending = (select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None))
                   .limit(cap).subquery())
        async with self.runtime.db.read() as session:  # a snapshot read: never queues behind writers
            count = await session.scalar(select(func.count()).select_from(pending))
            await session.rollback()
        return int(count or 0)

    async def prune(self, *, chunk: int = 1000) -> int:
        """Delete published events and consumer receipts older than the retention."""
        cutoff = self.runtime.clock.now() - self.retention
        removed = 0
        for table, ts, key in ((OutboxEvent, OutboxEvent.published_at, OutboxEvent.id),
                               (ConsumedEvent, ConsumedEvent.consumed_at, None)):
            while True:
                async with self.runtime.db.transaction() as session:
                    if key is not None:
                        old = select(key).where(ts < cutoff).limit(chunk).scalar_subquery()
                        result = await session.execute(
                            delete(table).where(key.in_(old))
                            .execution_options(synchronize_session=False))
                    else:
                        result = await session.execute(
                            delete(table).where(ts < cutoff)
                            .execution_options(synchronize_session=False))
                count = result.rowcount or 0  # type: ignore[attr-defined]
                removed += count
                if key is None or count < chunk:
                    break
        return removed

