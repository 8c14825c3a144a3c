"""Recent password re-entry: the dangerous admin actions (backup, restore, …) need the
password typed again within the last five minutes, in the same session.

``POST /api/auth/reauthenticate`` checks the password (a wrong one counts toward the
account's lockout, like a failed login) and records a ``password.reentered`` security event
naming the session (the ``sid`` of the access token). ``RecentlyReauthenticatedAdmin`` looks
for such an event of the caller's session no older than ``REAUTH_WINDOW`` on the runtime
clock. The security log is the record, so there is no extra state to keep consistent across
replicas and every re-entry is audited. An API key has no session and can never pass.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Forbidden
from tradepilot.identity.deps import get_admin
from tradepilot.identity.models import SecurityEvent
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.service import IdentityService

REAUTH_WINDOW = timedelta(minutes=5)


def require_session(principal: AuthUser) -> None:
    if principal.session_id is None:
        raise Forbidden("This needs a logged-in session (with a recent password re-entry), not an API key.",
                        code="session_required")


async def reauthenticate(identity: IdentityService, session: AsyncSession, *, principal: AuthUser, password: str,
                         ip: str | None, user_agent: str | None) -> datetime:
    """Check the caller's password and stamp their session as recently re-authenticated."""
    require_session(principal)
    user = await identity.get_user(session, user_id=principal.id)
    guard = identity.runtime.services.get("login_guard")
    if guard is not None:
        await guard.before_attempt(session, email=user.email, user=user, ip=ip)
    if not await asyncio.to_thread(identity.passwords.verify, user.password_hash, password):
        if guard is not None:
            await guard.on_failure(session, user=user, ip=ip, factor="password")
        record_security_event(session, clock=identity.clock, kind=SecurityEventKind.LOGIN_FAILED, user_id=user.id,
                              ip=ip, user_agent=user_agent, details={"factor": "password", "purpose": "reauthenticate"})
        await session.commit()
        raise Forbidden("The password is incorrect.", code="invalid_password")
    event = record_security_event(session, clock=identity.clock, kind=SecurityEventKind.PASSWORD_REENTERED,
                                  user_id=user.id, ip=ip, user_agent=user_agent,
                                  details={"session_id": str(principal.session_id)})
    await session.commit()
    return event.created_at


async def last_reauthentication(session: AsyncSession, *, principal: AuthUser, since: datetime) -> datetime | None:
    rows = await session.execute(
        select(SecurityEvent.created_at, SecurityEvent.details)
        .where(SecurityEvent.user_id == principal.id, SecurityEvent.kind == SecurityEventKind.PASSWORD_REENTERED,
               SecurityEvent.created_at >= since)
        .order_by(SecurityEvent.created_at.desc()))
    for created_at, details in rows:
        if (details or {}).get("session_id") == str(principal.session_id):
            return created_at  # type: ignore[no-any-return]
    return None


async def get_recently_reauthenticated_admin(principal: Annotated[AuthUser, Depends(get_admin)], db: DbSession,
                                             runtime: RuntimeDep) -> AuthUser:
    require_session(principal)
    since = runtime.clock.now() - REAUTH_WINDOW
    if await last_reauthentication(db, principal=principal, since=since) is None:
        raise Forbidden("Re-enter your password first (POST /api/auth/reauthenticate); it unlocks this for "
                        f"{int(REAUTH_WINDOW.total_seconds() // 60)} minutes.", code="reauthentication_required")
    return principal


RecentlyReauthenticatedAdmin = Annotated[AuthUser, Depends(get_recently_reauthenticated_admin)]
