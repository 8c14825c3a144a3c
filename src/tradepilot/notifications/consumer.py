"""The outbox consumer that turns domain events into notifications — exactly once per event.

It reads the ``outbox_event`` table, not the bus: the bus is at most once per subscriber, so a
crash after the relay published an event would lose its notification. Under the lease
``notifications-consumer`` one process scans the events after its cursor (minus a look-back
margin, since an event created earlier may commit later) that it has no receipt for. Each
event is handled in its own transaction together with its receipt (``consume_once``): the
notification and the receipt commit together or not at all, so a redelivery or a rescan never
makes a second one. Bus events on user topics only wake it up early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, or_, select

from tradepilot.core.bus import Subscription
from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost, lease_manager
from tradepilot.core.outbox import consume_once, row_to_event
from tradepilot.core.outbox_models import ConsumedEvent, OutboxEvent
from tradepilot.identity.models import User
from tradepilot.notifications import constants as c
from tradepilot.notifications.models import NotificationCursor
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.sources import EXACT_TYPES, PREFIXES, draft_for

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.notifications")

LOOKBACK = timedelta(minutes=5)  # an event may commit this long after its created_at and still be seen
BATCH_SIZE = 200
SERVICE_KEY = "notifications_consumer"


def _candidate_filter():  # type: ignore[no-untyped-def]
    return or_(OutboxEvent.type.in_(EXACT_TYPES), *(OutboxEvent.type.startswith(p) for p in PREFIXES))


class OutboxNotifier:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.lease: Lease | None = None

    async def start(self) -> None:
        self._subscription = await self.runtime.bus.subscribe("user.*", self._on_user_event)
        self._task = asyncio.create_task(lease_manager(self.runtime).run_while_held(c.LEASE_NAME, self._run),
                                         name="notifications-consumer")

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _on_user_event(self, event: Event) -> None:
        if event.type != c.NOTIFICATION_CREATED:
            self._wake.set()

    async def _run(self, lease: Lease) -> None:
        self.lease = lease
        poll = max(self.runtime.settings.outbox_poll_seconds, 0.05) * 2
        try:
            while True:
                self._wake.clear()
                try:
                    await self.process_pending()
                except LeaseLost:
                    raise
                except Exception:
                    logger.exception("notification pass failed")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=poll)
        finally:
            self.lease = None

    async def process_pending(self) -> int:
        """Handle every unhandled candidate event after the cursor; how many made notifications."""
        made = 0
        while True:
            position = await self._position()
            if position is None:
                return made
            async with self.runtime.db.read() as session:
                rows = list((await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.created_at >= position - LOOKBACK, OutboxEvent.user_id.is_not(None),
                           _candidate_filter(),
                           ~exists().where(and_(ConsumedEvent.consumer == c.CONSUMER_NAME,
                                                ConsumedEvent.event_id == OutboxEvent.id)))
                    .order_by(OutboxEvent.created_at, OutboxEvent.id).limit(BATCH_SIZE))).all())
                batch = [(row_to_event(row), row.created_at) for row in rows]
                await session.rollback()
            for event, _ in batch:
                made += await self.handle(event)
            if batch:
                await self._advance(max(created_at for _, created_at in batch))
            if len(batch) < BATCH_SIZE:
                return made

    async def handle(self, event: Event) -> int:
        """One event in one transaction with its receipt: 1 if it made a notification."""
        now = self.runtime.clock.now()
        async with self.runtime.db.transaction() as session:
            if self.lease is not None:
                await self.lease.assert_held(session)
            if not await consume_once(session, c.CONSUMER_NAME, event.id, now=now):
                return 0  # handled before (a redelivery, a rescan, another process)
            draft = draft_for(event)
            user = await session.get(User, uuid.UUID(event.user_id)) if draft is not None and event.user_id else None
            if draft is None or user is None:
                return 0
            made = await notifications_of(self.runtime).create(session, user=user, draft=draft, now=now,
                                                               source_event_id=event.id)
            return 0 if made is None else 1

    async def _position(self):  # type: ignore[no-untyped-def]
        """The cursor; on first start the newest outbox event (history is not notified)."""
        async with self.runtime.db.read() as session:
            position = await session.scalar(select(NotificationCursor.position)
                                            .where(NotificationCursor.consumer == c.CONSUMER_NAME))
            if position is None:
                position = await session.scalar(select(OutboxEvent.created_at)
                                                .order_by(OutboxEvent.created_at.desc()).limit(1))
            await session.rollback()
        return position

    async def _advance(self, newest):  # type: ignore[no-untyped-def]
        async with self.runtime.db.transaction() as session:
            row = await session.get(NotificationCursor, c.CONSUMER_NAME)
            if row is None:
                session.add(NotificationCursor(consumer=c.CONSUMER_NAME, position=newest))
            elif newest > row.position:
                row.position = newest


def notifier_of(runtime: Runtime) -> OutboxNotifier:
    notifier = runtime.services.get(SERVICE_KEY)
    if notifier is None:
        notifier = runtime.services[SERVICE_KEY] = OutboxNotifier(runtime)
    return notifier  # type: ignore[no-any-return]
