"""The outbox consumer that turns domain events into notifications — exactly once per event.

It reads the ``outbox_event`` table, not the bus: the bus is at most once per subscriber, so a
crash after the relay published an event would lose its notification. An event that makes a
notification is written with ``notify`` set (``notifications.sources`` tells the outbox which);
under the lease ``notifications-consumer`` one process reads those rows through their partial
index (only the events still to notify, oldest first — never the handled ones, however many)
and handles them in batches: one snapshot read for the users and their preferences, then ONE
short write transaction that claims the batch (``UPDATE … SET notify = NULL … RETURNING``: only
rows still set, so a redelivery, a second process or a rerun gets nothing), makes the
notifications and writes their events. The claim and the notifications commit together or not
at all. Bus events on user topics only wake it up early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select, update

from tradepilot.core.bus import Subscription
from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost, lease_manager
from tradepilot.core.outbox import row_to_event
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.identity.models import User
from tradepilot.notifications import constants as c
from tradepilot.notifications.models import NotificationSettings
from tradepilot.notifications.service import Wanted, notifications_of
from tradepilot.notifications.settings import preferences_of
from tradepilot.notifications.sources import Draft, draft_for

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.notifications")

BATCH_SIZE = 200
SERVICE_KEY = "notifications_consumer"

# built once: every pass runs them
_QUEUED = (select(OutboxEvent).where(OutboxEvent.notify == True)  # the partial index's own predicate
           .order_by(OutboxEvent.created_at, OutboxEvent.id).limit(BATCH_SIZE))
_CLAIM = (update(OutboxEvent).where(OutboxEvent.id.in_(bindparam("ids", expanding=True)),
                                    OutboxEvent.notify == True)
          .values(notify=None).returning(OutboxEvent.id))


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
        """Handle every queued event, oldest first; how many notifications it made."""
        made = 0
        while True:
            async with self.runtime.db.read() as session:
                batch = [row_to_event(row) for row in (await session.scalars(_QUEUED)).all()]
                await session.rollback()
            if not batch:
                return made
            handled, failed = await self._handle_isolating_failures(batch)
            made += handled
            if failed or len(batch) < BATCH_SIZE:  # what failed stays queued, for the next pass
                return made

    async def _handle_isolating_failures(self, batch: Sequence[Event]) -> tuple[int, bool]:
        """(notifications made, whether an event failed). The batch in one transaction; if that
        fails, event by event, so that one event that cannot be handled (it stays queued,
        retried next pass) does not hold up the others."""
        try:
            return await self.handle_batch(batch), False
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception:
            if len(batch) == 1:
                logger.exception("notification for outbox event %s failed; retried next pass", batch[0].id)
                return 0, True
            logger.warning("notification batch failed; handling its %d events one by one", len(batch), exc_info=True)
        made, failed = 0, False
        for event in batch:
            try:
                made += await self.handle_batch([event])
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception:
                failed = True
                logger.exception("notification for outbox event %s failed; retried next pass", event.id)
        return made, failed

    async def handle(self, event: Event) -> int:
        """One event: 1 if it made a notification (0 when handled before, or it makes none)."""
        return await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Event]) -> int:
        """Claim ``events`` and make their notifications in one transaction; how many it made.

        The users and their preferences are read first, from a snapshot, so that the write
        transaction (SQLite's one writer) runs only the claim, the inserts and the events."""
        drafts = {event.id: _draft(event) for event in events}
        user_ids = {uuid.UUID(e.user_id) for e in events if e.user_id and drafts[e.id] is not None}
        users: dict[uuid.UUID, User] = {}
        settings: dict[uuid.UUID, NotificationSettings] = {}
        if user_ids:
            async with self.runtime.db.read() as session:
                users = {u.id: u for u in (await session.scalars(select(User).where(User.id.in_(user_ids)))).all()}
                settings = {s.user_id: s for s in (await session.scalars(
                    select(NotificationSettings).where(NotificationSettings.user_id.in_(user_ids)))).all()}
                session.expunge_all()
                await session.rollback()
        now = self.runtime.clock.now()
        async with self.runtime.db.transaction() as session:
            if self.lease is not None:
                await self.lease.assert_held(session)
            claimed = set((await session.scalars(_CLAIM, {"ids": [e.id for e in events]})).all())
            wanted = []
            for event in events:
                draft = drafts[event.id]
                user = users.get(uuid.UUID(event.user_id)) if event.user_id else None
                if event.id not in claimed or draft is None or user is None:
                    continue
                preferences = preferences_of(settings.get(user.id), user.timezone)
                wanted.append(Wanted(user, draft, preferences, source_event_id=event.id))
            made = await notifications_of(self.runtime).create_many(session, wanted, now=now)
            return len(made)


def _draft(event: Event) -> Draft | None:
    """The event's notification; None (the event is then dropped) for a payload it cannot read."""
    try:
        return draft_for(event)
    except Exception:
        logger.exception("outbox event %s (%s) has a payload no notification can be made of", event.id, event.type)
        return None


def notifier_of(runtime: Runtime) -> OutboxNotifier:
    notifier = runtime.services.get(SERVICE_KEY)
    if notifier is None:
        notifier = runtime.services[SERVICE_KEY] = OutboxNotifier(runtime)
    return notifier  # type: ignore[no-any-return]
