"""HTTP edge of identity: /api/auth/* and /api/users/me."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Response, status

from tradepilot.core.deps import ClientIP, DbSession
from tradepilot.core.routing import api_router
from tradepilot.identity.deps import CurrentUser, Identity, OwnedSession
from tradepilot.identity.models import User
from tradepilot.identity import recovery
from tradepilot.identity.schemas import (
    Accepted,
    Credentials,
    LoginRequest,
    PasswordChange,
    ResetConfirm,
    ResetRequest,
    TokenBody,
    ProfileUpdate,
    RefreshRequest,
    SessionInfo,
    TokenPair,
    UserProfile,
)

router = api_router(prefix="/api/auth", tags=["auth"])
users_router = api_router(prefix="/api/users", tags=["users"])


def profile_of(user: User) -> UserProfile:
    return UserProfile(id=user.id, email=user.email, display_name=user.display_name, timezone=user.timezone,
                       role=user.role, plan=user.plan, email_verified=user.email_verified_at is not None,
                       created_at=user.created_at)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserProfile)
async def register(body: Credentials, db: DbSession, identity: Identity) -> UserProfile:
    """Create an account. Passwords: 8–128 characters, not on the common-password list."""
    return profile_of(await identity.register(db, email=body.email, password=body.password))


@router.post("/login", response_model=TokenPair)
async def login(body: LoginRequest, db: DbSession, identity: Identity, ip: ClientIP,
                user_agent: Annotated[str | None, Header()] = None) -> TokenPair:
    """Exchange email and password (and `otp` when 2FA is on) for an access token (15 min)
    and a refresh token."""
    return await identity.login(db, email=body.email, password=body.password, otp=body.otp, ip=ip,
                                user_agent=user_agent)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, db: DbSession, identity: Identity) -> TokenPair:
    """Rotate the refresh token. Reusing an already-used refresh token ends the session."""
    return await identity.refresh(db, refresh_token=body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentUser, db: DbSession, identity: Identity) -> Response:
    """End the current session; its access and refresh tokens stop working at once."""
    await identity.logout(db, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/profile", response_model=UserProfile)
async def get_profile(principal: CurrentUser, db: DbSession, identity: Identity) -> UserProfile:
    return profile_of(await identity.get_user(db, user_id=principal.id))


@router.put("/profile", response_model=UserProfile)
async def put_profile(body: ProfileUpdate, principal: CurrentUser, db: DbSession, identity: Identity) -> UserProfile:
    return profile_of(await identity.update_profile(db, user_id=principal.id, changes=body))


@router.get("/sessions", response_model=list[SessionInfo])
async def list_sessions(principal: CurrentUser, db: DbSession, identity: Identity) -> list[SessionInfo]:
    """Active sessions (devices) of the caller, most recently used first."""
    rows = await identity.list_sessions(db, user_id=principal.id)
    return [SessionInfo(id=s.id, created_at=s.created_at, last_used_at=s.last_used_at, expires_at=s.expires_at,
                        ip=s.ip, user_agent=s.user_agent, current=s.id == principal.session_id) for s in rows]


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(target: OwnedSession, db: DbSession, identity: Identity) -> Response:
    """Log one device out. Another user's session id answers 404."""
    await identity.revoke_session(db, target=target)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/change-password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: PasswordChange, principal: CurrentUser, db: DbSession, identity: Identity,
                          ip: ClientIP) -> Response:
    """Needs the current password. Every other session ends; this one stays logged in."""
    await recovery.change_password(identity, db, principal=principal, current=body.current_password,
                                   new=body.new_password, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


RESET_ACCEPTED = "If an account exists for this address, a reset link is on its way. It works once, for 30 minutes."


@router.post("/reset-password", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def reset_password(body: ResetRequest, db: DbSession, identity: Identity, ip: ClientIP) -> Accepted:
    """Mail a reset link. The answer is the same whether or not the address has an account."""
    await recovery.request_password_reset(identity, db, email=body.email, ip=ip)
    return Accepted(detail=RESET_ACCEPTED)


@router.post("/reset-password/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_reset(body: ResetConfirm, db: DbSession, identity: Identity, ip: ClientIP) -> Response:
    """Set a new password with the emailed token (and a 2FA code if enabled). Ends every session."""
    await recovery.confirm_password_reset(identity, db, token=body.token, new=body.new_password, otp=body.otp, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/verify-email", response_model=UserProfile)
async def verify_email(body: TokenBody, db: DbSession, identity: Identity) -> UserProfile:
    """Confirm the email address with the token from the verification mail."""
    return profile_of(await recovery.verify_email(identity, db, token=body.token))


@router.post("/verify-email/resend", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def resend_verification(principal: CurrentUser, db: DbSession, identity: Identity) -> Accepted:
    user = await identity.get_user(db, user_id=principal.id)
    if user.email_verified_at is None:
        await recovery.send_verification(identity, db, user=user)
        await db.commit()
    return Accepted(detail="If your address is not verified yet, a new link is on its way.")


# /api/users/me is the same resource as /api/auth/profile, with the same schema.
users_router.add_api_route("/me", get_profile, methods=["GET"], response_model=UserProfile, name="get_me")
users_router.add_api_route("/me", put_profile, methods=["PUT"], response_model=UserProfile, name="put_me")
