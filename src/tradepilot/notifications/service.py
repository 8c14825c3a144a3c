"""NotificationService: make a notification, push it, list and change it.

``create`` is the one way a notification comes to be (from an outbox event, a note, a broadcast,
a digest): it applies the user's channel choices and quiet hours, then pushes — an outbox
event on the user's topic for the WebSocket ``account`` channel and one job per push channel,
all in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.db import new_id
from tradepilot.core.events import Topics
from tradepilot.core.outbox import Pending, emit_many
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.models import User
from tradepilot.notifications import constants as c
from tradepilot.notifications.channels import EmailChannel, NotificationChannel, Recipient
from tradepilot.notifications.delivery import TargetedChannel
from tradepilot.notifications.models import Notification, NotificationDelivery
from tradepilot.notifications.settings import Preferences, load_preferences
from tradepilot.notifications.sources import Draft

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

SERVICE_KEY = "notifications"


def notification_payload(row: Notification) -> dict[str, object]:
    return {"id": row.id, "category": row.category, "title": row.title, "body": row.body, "data": row.data,
            "created_at": row.created_at, "read_at": row.read_at, "held_until": row.held_until}


def recipient_of(user: User) -> Recipient:
    return Recipient(user_id=user.id, email=user.email, name=user.display_name, timezone=user.timezone or "UTC")


def _created_event(row: Notification, user: User) -> Pending:
    """The ``notification.created`` event that shows ``row`` on the user's WebSocket."""
    return Pending(topic=Topics.user(user.id, c.TOPIC_KIND), type=c.NOTIFICATION_CREATED, user_id=user.id,
                   payload={"notification": notification_payload(row)})


@dataclass(frozen=True, slots=True)
class Wanted:
    """A notification to make: for whom, what, with which preferences, from which outbox event."""

    user: User
    draft: Draft
    preferences: Preferences
    source_event_id: str | None = None


class NotificationService:
    """``runtime.services["notifications"]``. ``channels``: the push channels by name."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.channels: dict[str, NotificationChannel] = {c.EMAIL: EmailChannel(runtime)}
        self.channels.update({name: TargetedChannel(runtime, name) for name in c.TARGETED})

    # -- making ----------------------------------------------------------------------------

    async def create(self, session: AsyncSession, *, user: User, draft: Draft, now: datetime,
                     source_event_id: str | None = None, preferences: Preferences | None = None,
                     ) -> Notification | None:
        """Make and push (or hold) a notification; None when the user turned its category off."""
        prefs = preferences or await load_preferences(session, user.id, user.timezone)
        made = await self.create_many(session, [Wanted(user, draft, prefs, source_event_id)], now=now)
        return made[0] if made else None

    async def create_many(self, session: AsyncSession, wanted: Sequence[Wanted], *,
                          now: datetime) -> list[Notification]:
        """:meth:`create` for several at once (the outbox consumer's batch): one flush for the
        rows, one ``emit_many`` for their WebSocket events, a job per push channel as usual."""
        rows: list[Notification] = []
        made: list[tuple[Notification, User, tuple[str, ...]]] = []  # the ones pushed now
        for item in wanted:
            draft = item.draft
            channels = item.preferences.channels_for(draft.category)
            if not channels:
                continue
            window = item.preferences.window()
            held = (window is not None and draft.category in c.CONFIGURABLE and draft.category not in c.NEVER_HELD
                    and window.holds(now))
            row = Notification(id=new_id(), user_id=item.user.id, category=draft.category,
                               title=draft.title[:200], body=draft.body[:4000], data=dict(draft.data),
                               source_event_id=item.source_event_id, created_at=now, read_at=None,
                               held_until=window.ends_after(now) if held and window else None, digest_id=None)
            session.add(row)
            rows.append(row)
            if not held:
                made.append((row, item.user, channels))
        if not rows:
            return rows
        await session.flush()
        await emit_many(session, [_created_event(row, user) for row, user, channels in made if c.IN_APP in channels])
        for row, user, channels in made:
            await self._deliver(session, row, user, channels, now=now)
        return rows

    async def push(self, session: AsyncSession, row: Notification, user: User, channels: tuple[str, ...], *,
                   now: datetime) -> None:
        """The WebSocket event (``in_app``) and one delivery job per other channel, in this transaction."""
        if c.IN_APP in channels:
            await emit_many(session, [_created_event(row, user)])
        await self._deliver(session, row, user, channels, now=now)

    async def _deliver(self, session: AsyncSession, row: Notification, user: User, channels: tuple[str, ...], *,
                       now: datetime) -> None:
        """One delivery job per push channel (not ``in_app``) that has a destination."""
        recipient = recipient_of(user)
        for name in channels:
            channel = self.channels.get(name)
            if channel is None:
                continue
            job_id = await channel.deliver(session, row, recipient)
            if job_id is None:
                continue  # no destination on this channel
            session.add(NotificationDelivery(notification_id=row.id, channel=name, job_id=job_id, created_at=now))

    async def broadcast(self, session: AsyncSession, *, draft: Draft, now: datetime) -> int:
        """An administrator's announcement to every active user; how many got it."""
        users = (await session.scalars(select(User).where(User.is_active.is_(True)))).all()
        for user in users:
            await self.create(session, user=user, draft=draft, now=now)
        return len(users)

    # -- reading and changing ---------------------------------------------------------------

    async def page(self, session: AsyncSession, *, user_id: uuid.UUID, unread: bool | None, category: str | None,
                   limit: int, cursor: str | None) -> tuple[list[Notification], str | None]:
        """Newest first."""
        query = select(Notification).where(Notification.user_id == user_id)
        if unread is True:
            query = query.where(Notification.read_at.is_(None))
        elif unread is False:
            query = query.where(Notification.read_at.is_not(None))
        if category is not None:
            query = query.where(Notification.category == category)
        return await time_keyset_page(session, query, Notification.created_at, Notification.id, limit=limit,
                                      cursor=cursor)

    @staticmethod
    async def mark_read(session: AsyncSession, row: Notification, *, now: datetime) -> Notification:
        if row.read_at is None:
            row.read_at = now
            await session.flush()
        return row

    @staticmethod
    async def mark_all_read(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> int:
        result = await session.execute(
            update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=now).execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    @staticmethod
    async def remove(session: AsyncSession, row: Notification) -> None:
        await session.execute(delete(Notification).where(Notification.id == row.id))


def notifications_of(runtime: Runtime) -> NotificationService:
    service = runtime.services.get(SERVICE_KEY)
    if service is None:
        service = runtime.services[SERVICE_KEY] = NotificationService(runtime)
    return service  # type: ignore[no-any-return]
