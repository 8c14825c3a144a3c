"""FastAPI dependencies of the notification centre: the service and ``OwnedNotification``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import NotFound
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser, require_scope
from tradepilot.identity.principal import AuthUser
from tradepilot.notifications.models import Notification
from tradepilot.notifications.service import NotificationService, notifications_of


def get_notifications(runtime: RuntimeDep) -> NotificationService:
    return notifications_of(runtime)


Notifications = Annotated[NotificationService, Depends(get_notifications)]


@ownership_dependency
async def owned_notification(notification_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> Notification:
    """The caller's notification; 404 ``notification_not_found`` alike for a missing id and another user's."""
    row = await db.get(Notification, notification_id)
    if row is None or row.user_id != principal.id:
        raise NotFound("Notification not found.", code="notification_not_found")
    return row


OwnedNotification = Annotated[Notification, Depends(owned_notification)]

ReadUser = Annotated[AuthUser, Depends(require_scope("read"))]  # every route here needs the read scope
