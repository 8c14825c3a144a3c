"""HTTP edge of the notification centre: /api/notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.deps import get_admin
from tradepilot.identity.models import User
from tradepilot.notifications import constants as c
from tradepilot.notifications.deps import Notifications, OwnedNotification, ReadUser
from tradepilot.notifications.models import Notification
from tradepilot.notifications.schemas import (
    BroadcastOut,
    Category,
    NotificationCreate,
    NotificationOut,
    QuietHoursIn,
    ReadAllOut,
    SettingsOut,
    SettingsUpdate,
)
from tradepilot.notifications.settings import Preferences, load_preferences, save_preferences
from tradepilot.notifications.sources import Draft

router = api_router(prefix="/api/notifications", tags=["notifications"])
_NOT_FOUND = {404: {"description": "No such notification, or not yours (notification_not_found)"}}


def notification_out(row: Notification) -> NotificationOut:
    return NotificationOut.model_validate(row)


def settings_out(prefs: Preferences) -> SettingsOut:
    quiet = QuietHoursIn(start=prefs.quiet_start, end=prefs.quiet_end) if prefs.quiet_start and prefs.quiet_end \
        else None
    return SettingsOut(channels={k: list(v) for k, v in prefs.channels.items()}, quiet_hours=quiet,
                       timezone=prefs.timezone, available_channels=list(c.CHANNELS))


@router.get("", response_model=Page[NotificationOut], summary="Your notifications")
async def list_notifications(
    principal: ReadUser, db: DbSession, service: Notifications,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    unread: Annotated[bool | None, Query(description="true: only unread; false: only read")] = None,
    category: Category | None = None,
) -> Page[NotificationOut]:
    """Newest first."""
    rows, next_cursor = await service.page(db, user_id=principal.id, unread=unread, category=category, limit=limit,
                                           cursor=cursor)
    return Page[NotificationOut](items=[notification_out(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NotificationOut | BroadcastOut,
             summary="A note to yourself, or (administrators) a broadcast",
             responses={403: {"description": "broadcast by a non-administrator (admin_required)"}})
async def create_notification(body: NotificationCreate, principal: ReadUser, db: DbSession,
                              service: Notifications, runtime: RuntimeDep) -> NotificationOut | BroadcastOut:
    now = runtime.clock.now()
    if body.broadcast:
        get_admin(principal)
        count = await service.broadcast(db, draft=Draft(c.ANNOUNCEMENTS, body.title, body.body or body.title),
                                        now=now)
        await db.commit()
        return BroadcastOut(recipients=count)
    user = await db.get(User, principal.id)
    assert user is not None  # authenticated just now
    row = await service.create(db, user=user, draft=Draft(c.NOTES, body.title, body.body or body.title), now=now)
    assert row is not None  # notes always go to the centre
    out = notification_out(row)
    await db.commit()
    return out


@router.put("/read-all", response_model=ReadAllOut, summary="Mark all your notifications read")
async def read_all(principal: ReadUser, db: DbSession, service: Notifications, runtime: RuntimeDep) -> ReadAllOut:
    marked = await service.mark_all_read(db, user_id=principal.id, now=runtime.clock.now())
    await db.commit()
    return ReadAllOut(marked=marked)


@router.get("/settings", response_model=SettingsOut, summary="Channels per category and quiet hours")
async def get_settings(principal: ReadUser, db: DbSession) -> SettingsOut:
    user = await db.get(User, principal.id)
    assert user is not None
    return settings_out(await load_preferences(db, principal.id, user.timezone))


@router.put("/settings", response_model=SettingsOut, summary="Change channels or quiet hours")
async def put_settings(body: SettingsUpdate, principal: ReadUser, db: DbSession, runtime: RuntimeDep) -> SettingsOut:
    """Quiet hours are in your profile's time zone; notifications they hold are merged into one
    digest when they end. Security notifications are never held."""
    user = await db.get(User, principal.id)
    assert user is not None
    quiet = None
    if "quiet_hours" in body.model_fields_set:
        quiet = (body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else (None, None)
    await save_preferences(db, principal.id, channels=body.channels, quiet=quiet, now=runtime.clock.now())
    prefs = await load_preferences(db, principal.id, user.timezone)
    await db.commit()
    return settings_out(prefs)


@router.put("/{notification_id}/read", response_model=NotificationOut, summary="Mark a notification read",
            responses=_NOT_FOUND)
async def read_one(notification: OwnedNotification, principal: ReadUser, db: DbSession, service: Notifications,
                   runtime: RuntimeDep) -> NotificationOut:
    row = await service.mark_read(db, notification, now=runtime.clock.now())
    out = notification_out(row)
    await db.commit()
    return out


@router.delete("/{notification_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a notification",
               responses=_NOT_FOUND)
async def delete_one(notification: OwnedNotification, principal: ReadUser, db: DbSession,
                     service: Notifications) -> Response:
    await service.remove(db, notification)
    await db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
