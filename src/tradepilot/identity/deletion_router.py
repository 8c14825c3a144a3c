"""HTTP edge of account deletion: /api/users/me (DELETE) and /api/users/me/deletion."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, status

from tradepilot.core.deps import ClientIP, DbSession
from tradepilot.core.routing import api_router
from tradepilot.identity import deletion
from tradepilot.identity.deletion_schemas import DeletionRequest, DeletionStatus
from tradepilot.identity.deps import CurrentUser, Identity
from tradepilot.identity.models import User
from tradepilot.identity.ratelimit import AUTH, limit_class

router = api_router(prefix="/api/users/me", tags=["users"])


def status_of(user: User) -> DeletionStatus:
    return DeletionStatus(pending=user.deletion_scheduled_for is not None, requested_at=user.deletion_requested_at,
                          scheduled_for=user.deletion_scheduled_for, grace_days=deletion.DELETION_GRACE_DAYS)


# it takes a password: the strict sign-in budget, so a stolen token cannot guess it quickly
@router.delete("", status_code=status.HTTP_202_ACCEPTED, response_model=DeletionStatus,
               openapi_extra=limit_class(AUTH))
async def delete_me(body: DeletionRequest, principal: CurrentUser, db: DbSession, identity: Identity, ip: ClientIP,
                    user_agent: Annotated[str | None, Header()] = None) -> DeletionStatus:
    """Delete your account after a grace period (14 days). Needs your password (and `otp` when
    2FA is on). Open orders and running strategies are stopped and every session and API key
    ends now; log in again before the date to cancel."""
    user = await deletion.request_deletion(identity, db, principal=principal, password=body.password, otp=body.otp,
                                           ip=ip, user_agent=user_agent)
    return status_of(user)


@router.get("/deletion", response_model=DeletionStatus)
async def get_deletion(principal: CurrentUser, db: DbSession, identity: Identity) -> DeletionStatus:
    """Whether deletion of your account is pending, and when it happens."""
    return status_of(await identity.get_user(db, user_id=principal.id))


@router.post("/deletion/cancel", response_model=DeletionStatus)
async def cancel_deletion(principal: CurrentUser, db: DbSession, identity: Identity, ip: ClientIP) -> DeletionStatus:
    """Keep your account: cancels a pending deletion (log in again first — the request ended
    every session)."""
    return status_of(await deletion.cancel_deletion(identity, db, principal=principal, ip=ip))
