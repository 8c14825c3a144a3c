"""Password change, password reset by email, and email verification.

Reset requests are answered identically whatever the email: the request only enqueues a job
(one row, same cost for known and unknown addresses); the job looks the account up and mails
the link. Links are built from ``TRADEPILOT_PUBLIC_URL``, never from the request's Host.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.crypto import random_token, token_hmac
from tradepilot.core.errors import Forbidden, Unauthorized, Unprocessable
from tradepilot.identity.models import OneTimeToken, User, UserSession
from tradepilot.identity.passwords import PasswordPolicyError, check_policy
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.security_notice import emit_security_alert
from tradepilot.identity.service import IdentityService, normalise_email
from tradepilot.jobs.registry import JobContext, job_handler

RESET = "password_reset"
VERIFY = "verify_email"
RESET_TTL = timedelta(minutes=30)
VERIFY_TTL = timedelta(hours=24)
RESET_REQUEST_JOB = "identity.password_reset_request"


def public_url(identity: IdentityService) -> str:
    s = identity.runtime.settings
    return s.public_url or f"http://{s.host}:{s.port}"


def _hash(identity: IdentityService, token: str, purpose: str) -> str:
    return token_hmac(identity.runtime.settings.secret_key.get_secret_value(), token, purpose=f"one-time:{purpose}")


async def issue_token(identity: IdentityService, session: AsyncSession, *, user_id: uuid.UUID, purpose: str,
                      ttl: timedelta) -> str:
    now = identity.clock.now()
    token = random_token(32)
    session.add(OneTimeToken(user_id=user_id, purpose=purpose, token_hash=_hash(identity, token, purpose),
                             created_at=now, expires_at=now + ttl))
    return token


async def redeem_token(identity: IdentityService, session: AsyncSession, *, token: str, purpose: str) -> uuid.UUID:
    """Spend a token once (a conditional update, so two concurrent redemptions cannot both win)."""
    now = identity.clock.now()
    spent = await session.execute(
        update(OneTimeToken)
        .where(OneTimeToken.token_hash == _hash(identity, token, purpose), OneTimeToken.purpose == purpose,
               OneTimeToken.used_at.is_(None), OneTimeToken.expires_at > now)
        .values(used_at=now)
        .returning(OneTimeToken.user_id)
    )
    user_id = spent.scalar_one_or_none()
    if user_id is None:
        raise Unprocessable("This link is invalid, expired or already used.", code="invalid_token")
    return user_id


def _check_policy(password: str, email: str) -> None:
    try:
        check_policy(password, email=email)
    except PasswordPolicyError as exc:
        raise Unprocessable(str(exc), code=exc.code) from None


async def _set_password(identity: IdentityService, user: User, password: str) -> None:
    user.password_hash = await asyncio.to_thread(identity.passwords.hash, password)
    user.password_changed_at = user.updated_at = identity.clock.now()


async def _revoke_all_sessions(identity: IdentityService, session: AsyncSession, *, user_id: uuid.UUID,
                               keep: uuid.UUID | None, reason: str) -> None:
    query = update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(UserSession.id != keep)
    await session.execute(query.values(revoked_at=identity.clock.now(), revoke_reason=reason))


async def change_password(identity: IdentityService, session: AsyncSession, *, principal: AuthUser, current: str,
                          new: str, ip: str | None) -> None:
    """Needs the current password; ends every other session (this one stays logged in)."""
    user = await identity.get_user(session, user_id=principal.id)
    if not await asyncio.to_thread(identity.passwords.verify, user.password_hash, current):
        raise Forbidden("The current password is incorrect.", code="invalid_password")
    _check_policy(new, user.email)
    await _set_password(identity, user, new)
    await _revoke_all_sessions(identity, session, user_id=user.id, keep=principal.session_id, reason="password_changed")
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.PASSWORD_CHANGED, user_id=user.id, ip=ip)
    await _alert(identity, session, user, "Your password was changed", ip)
    await session.commit()
    await identity.announce_user_changed(user.id)


async def request_password_reset(identity: IdentityService, session: AsyncSession, *, email: str,
                                 ip: str | None) -> None:
    """The same work for every address: one job row. The job decides whether to send mail."""
    await identity.runtime.services["jobs"].enqueue(session, kind=RESET_REQUEST_JOB,
                                                    payload={"email": normalise_email(email), "ip": ip})
    await session.commit()


@job_handler(RESET_REQUEST_JOB, sensitive_payload=True)
async def _send_reset_link(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    identity: IdentityService = ctx.runtime.services["identity"]
    async with ctx.runtime.db.transaction() as session:
        user = await session.scalar(select(User).where(User.email == payload["email"], User.is_active.is_(True)))
        if user is None:
            return {"sent": False}
        token = await issue_token(identity, session, user_id=user.id, purpose=RESET, ttl=RESET_TTL)
        record_security_event(session, clock=identity.clock, kind=SecurityEventKind.PASSWORD_RESET_REQUESTED,
                              user_id=user.id, ip=payload.get("ip"))
        await ctx.runtime.services["email"].send(
            session, to=user.email, template="password_reset", user_id=user.id,
            context={"name": user.display_name, "reset_url": f"{public_url(identity)}/reset-password?token={token}",
                     "expires_minutes": int(RESET_TTL.total_seconds() // 60)})
    return {"sent": True}


async def confirm_password_reset(identity: IdentityService, session: AsyncSession, *, token: str, new: str,
                                 otp: str | None, ip: str | None) -> None:
    """Token + new password (+ a second factor when 2FA is on). Ends every session."""
    user_id = await redeem_token(identity, session, token=token, purpose=RESET)
    user = await identity.get_user(session, user_id=user_id)
    _check_policy(new, user.email)
    try:
        # a reset never bypasses 2FA
        await identity.runtime.services["second_factor"].require(session, user=user, otp=otp, ip=ip)
    except Unauthorized as exc:
        if exc.code != "two_factor_required":
            await _count_reset_otp_failure(identity, session, user_id=user_id, ip=ip)
        raise
    await _set_password(identity, user, new)
    await _revoke_all_sessions(identity, session, user_id=user.id, keep=None, reason="password_reset")
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.PASSWORD_RESET, user_id=user.id, ip=ip)
    await _alert(identity, session, user, "Your password was reset", ip)
    await session.commit()
    await identity.announce_user_changed(user.id)


async def _count_reset_otp_failure(identity: IdentityService, session: AsyncSession, *, user_id: uuid.UUID,
                                   ip: str | None) -> None:
    """A wrong code during a reset counts toward lockout like a wrong code at login; the
    token stays unspent (its redemption is rolled back) but guessing is not free."""
    await session.rollback()
    user = await identity.get_user(session, user_id=user_id)
    guard = identity.runtime.services.get("login_guard")
    if guard is not None:
        await guard.on_failure(session, user=user, ip=ip, factor="second_factor")
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.TWO_FACTOR_FAILED, user_id=user_id,
                          ip=ip, details={"during": "password_reset"})
    await session.commit()


async def send_verification(identity: IdentityService, session: AsyncSession, *, user: User) -> None:
    """Mail a verification link (in the caller's transaction)."""
    token = await issue_token(identity, session, user_id=user.id, purpose=VERIFY, ttl=VERIFY_TTL)
    await identity.runtime.services["email"].send(
        session, to=user.email, template="verify_email", user_id=user.id,
        context={"name": user.display_name, "verify_url": f"{public_url(identity)}/verify-email?token={token}",
                 "expires_hours": int(VERIFY_TTL.total_seconds() // 3600)})


async def verify_email(identity: IdentityService, session: AsyncSession, *, token: str) -> User:
    user_id = await redeem_token(identity, session, token=token, purpose=VERIFY)
    user = await identity.get_user(session, user_id=user_id)
    if user.email_verified_at is None:
        user.email_verified_at = identity.clock.now()
        record_security_event(session, clock=identity.clock, kind=SecurityEventKind.EMAIL_VERIFIED, user_id=user.id)
        await identity.runtime.services["email"].send(session, to=user.email, template="welcome", user_id=user.id,
                                                      context={"name": user.display_name})
    await session.commit()
    return user


async def _alert(identity: IdentityService, session: AsyncSession, user: User, event: str, ip: str | None) -> None:
    await emit_security_alert(session, user_id=user.id, event=event, ip=ip, now=identity.clock.now())
    await identity.runtime.services["email"].send(
        session, to=user.email, template="security_alert", user_id=user.id,
        context={"name": user.display_name, "event": event, "ip": ip,
                 "occurred_at": identity.clock.now().strftime("%Y-%m-%d %H:%M UTC")})
