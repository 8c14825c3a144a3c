"""Quiet hours end: what they held is merged into one digest notification per user.

The ``notifications.release_digests`` job (every minute, once across replicas by the
scheduler) finds held notifications whose ``held_until`` has passed. The held rows are claimed
by a conditional UPDATE (``digest_id IS NULL``), so two runs can never merge one twice. The
digest is pushed on every channel any of its notifications would have used.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from tradepilot.identity.models import User
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.notifications import constants as c
from tradepilot.notifications.models import Notification
from tradepilot.notifications.pause import wait_out_maintenance
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.settings import load_preferences

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

RELEASE_JOB = "notifications.release_digests"
RELEASE_SCHEDULE = schedule(RELEASE_JOB, "* * * * *", RELEASE_JOB, max_attempts=2)
LISTED = 20  # a digest names this many notifications, then counts the rest


async def release_due_digests(runtime: Runtime) -> int:
    """Merge every user's held notifications that are due; returns how many digests were made."""
    now = runtime.clock.now()
    async with runtime.db.read() as session:
        due = (await session.execute(
            select(Notification.user_id, Notification.id)
            .where(Notification.held_until.is_not(None), Notification.held_until <= now,
                   Notification.digest_id.is_(None)))).all()
        await session.rollback()
    by_user: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for user_id, notification_id in due:
        by_user[user_id].append(notification_id)
    made = 0
    for user_id, ids in by_user.items():
        made += await _release_one(runtime, user_id, ids, now)
    return made


async def _release_one(runtime: Runtime, user_id: uuid.UUID, ids: list[uuid.UUID], now: datetime) -> int:
    digest_id = uuid.uuid4()
    async with runtime.db.transaction() as session:
        claimed = await session.execute(
            update(Notification).where(Notification.id.in_(ids), Notification.digest_id.is_(None))
            .values(digest_id=digest_id).execution_options(synchronize_session=False))
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return 0
        held = list((await session.scalars(select(Notification).where(Notification.digest_id == digest_id)
                                           .order_by(Notification.created_at, Notification.id))).all())
        user = await session.get(User, user_id)
        if user is None:
            return 0
        prefs = await load_preferences(session, user_id, user.timezone)
        channels = tuple(dict.fromkeys(ch for row in held for ch in prefs.channels_for(row.category)))
        service = notifications_of(runtime)
        row = Notification(id=digest_id, user_id=user_id, category=c.DIGEST, title=digest_title(len(held)),
                           body=digest_body(held), data={"notification_ids": [str(r.id) for r in held]},
                           source_event_id=None, created_at=now, read_at=None, held_until=None, digest_id=None)
        session.add(row)
        await session.flush()
        await service.push(session, row, user, channels or (c.IN_APP,), now=now)
    return 1


def digest_title(count: int) -> str:
    return f"While quiet hours were on: {count} notification{'s' if count != 1 else ''}"


def digest_body(rows: list[Notification]) -> str:
    lines = [f"- {row.created_at:%Y-%m-%d %H:%M} UTC [{row.category}] {row.title}" for row in rows[:LISTED]]
    if len(rows) > LISTED:
        lines.append(f"… and {len(rows) - LISTED} more in your notification centre.")
    return "\n".join(lines)


@job_handler(RELEASE_JOB, timeout_seconds=300)
async def release_digests(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    await wait_out_maintenance(ctx.runtime)
    return {"digests": await release_due_digests(ctx.runtime)}
