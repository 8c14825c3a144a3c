"""HTTP edge of the security event log: GET /api/auth/security-events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from tradepilot.core.deps import DbSession
from tradepilot.core.errors import Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.identity.deps import CurrentUser, get_admin
from tradepilot.identity.security_log import known_kinds, list_security_events
from tradepilot.identity.security_schemas import SecurityEventInfo

router = api_router(prefix="/api/auth", tags=["auth"])


@router.get("/security-events", response_model=Page[SecurityEventInfo])
async def security_events(
    principal: CurrentUser,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=48, description="Only this kind, e.g. `login.failed`")] = None,
    user_id: Annotated[uuid.UUID | None, Query(description="Administrators: one user's events")] = None,
) -> Page[SecurityEventInfo]:
    """Your account's security log, newest first: logins, lockouts, new addresses, password, 2FA
    and API-key changes, revoked sessions, admin actions. Administrators see every account's
    events, or one account's with `user_id`."""
    if kind is not None and kind not in known_kinds():
        raise Unprocessable(f"Unknown event kind {kind!r}.", code="unknown_event_kind",
                            extra={"kinds": sorted(known_kinds())})
    scope: uuid.UUID | None = principal.id
    if user_id != principal.id and (user_id is not None or principal.is_admin):
        get_admin(principal)  # another account's events, or everyone's: administrators only
        scope = user_id
    rows, next_cursor = await list_security_events(db, user_id=scope, kind=kind, limit=limit, cursor=cursor)
    return Page[SecurityEventInfo](items=[SecurityEventInfo.model_validate(r) for r in rows], next_cursor=next_cursor)
