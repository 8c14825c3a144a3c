"""FastAPI dependencies of alerts: the service and ``OwnedAlert``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tradepilot.alerts.models import Alert
from tradepilot.alerts.service import AlertService, alert_not_found, alerts_of
from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser, require_scope
from tradepilot.identity.principal import AuthUser


def get_alerts(runtime: RuntimeDep) -> AlertService:
    return alerts_of(runtime)


Alerts = Annotated[AlertService, Depends(get_alerts)]


@ownership_dependency
async def owned_alert(alert_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> Alert:
    """The caller's alert; 404 ``alert_not_found`` alike for a missing id and another user's."""
    row = await db.get(Alert, alert_id)
    if row is None or row.user_id != principal.id:
        raise alert_not_found()
    return row


OwnedAlert = Annotated[Alert, Depends(owned_alert)]

ReadUser = Annotated[AuthUser, Depends(require_scope("read"))]  # every route here needs the read scope
