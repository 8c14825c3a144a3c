"""``POST /api/auth/reauthenticate``: re-enter the password before a dangerous action."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Header

from tradepilot.core.deps import ClientIP, DbSession
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Schema
from tradepilot.identity.deps import CurrentUser, Identity
from tradepilot.identity.reauth import REAUTH_WINDOW, reauthenticate
from tradepilot.identity.twofactor_schemas import PasswordBody

router = api_router(prefix="/api/auth", tags=["auth"])


class Reauthenticated(Schema):
    reauthenticated_at: datetime
    valid_until: datetime


@router.post("/reauthenticate", response_model=Reauthenticated)
async def post_reauthenticate(body: PasswordBody, principal: CurrentUser, db: DbSession, identity: Identity,
                              ip: ClientIP, user_agent: Annotated[str | None, Header()] = None) -> Reauthenticated:
    """Confirm the password of the current session: for five minutes it may run the dangerous
    admin actions (backup, restore). A wrong password is 403 `invalid_password` and counts
    toward the lockout; an API key is 403 `session_required`."""
    at = await reauthenticate(identity, db, principal=principal, password=body.password, ip=ip,
                              user_agent=user_agent)
    return Reauthenticated(reauthenticated_at=at, valid_until=at + REAUTH_WINDOW)
