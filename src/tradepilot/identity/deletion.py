"""Account deletion with a grace period.

``DELETE /api/users/me`` (password, and a second factor when 2FA is on) stops what the
account runs (the stop hooks of ``identity.lifecycle``), revokes every session and API key
at once, and schedules the purge ``DELETION_GRACE_DAYS`` days later. The owner may log in
again during the grace period — ``GET /api/users/me/deletion`` shows the date — and
``POST /api/users/me/deletion/cancel`` keeps the account. An hourly job purges accounts
whose date has passed: the stop hooks run once more, then the user row is deleted and
everything the account owns goes with it (foreign keys cascade).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, Forbidden
from tradepilot.core.events import Event, Topics
from tradepilot.identity.lifecycle import StopReason, revoke_all_credentials, stop_account_activity
from tradepilot.identity.models import User
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.service import IdentityService
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.identity")

DELETION_GRACE_DAYS = 14
DELETION_GRACE = timedelta(days=DELETION_GRACE_DAYS)
PURGE_JOB = "identity.purge_deleted_accounts"
PURGE_SCHEDULE = schedule(PURGE_JOB, "17 * * * *", PURGE_JOB)  # hourly, at a quiet minute
DELETION_TEMPLATE = "account_deletion"
_WHEN = "%Y-%m-%d %H:%M UTC"


class DeletionEventKind:
    """Security-log kinds of the deletion flow that ``SecurityEventKind`` does not have."""

    CANCELLED = "account.deletion_cancelled"


async def request_deletion(identity: IdentityService, session: AsyncSession, *, principal: AuthUser,
                           password: str, otp: str | None, ip: str | None, user_agent: str | None) -> User:
    """Check the password (and second factor), stop the account, revoke its credentials,
    and schedule the purge."""
    user = await identity.get_user(session, user_id=principal.id)
    if user.deletion_scheduled_for is not None:
        raise Conflict("Deletion of this account is already scheduled.", code="deletion_already_requested",
                       extra={"deletion_scheduled_for": user.deletion_scheduled_for.isoformat()})
    if not await asyncio.to_thread(identity.passwords.verify, user.password_hash, password):
        raise Forbidden("The password is incorrect.", code="invalid_password")
    second_factor = identity.runtime.services.get("second_factor")
    if second_factor is not None:
        await second_factor.require(session, user=user, otp=otp, ip=ip)
    await stop_account_activity(identity.runtime, session, user_id=user.id, reason=StopReason.DELETION_REQUESTED)
    now = identity.clock.now()
    user.deletion_requested_at, user.deletion_scheduled_for = now, now + DELETION_GRACE
    user.updated_at = now
    sessions, keys = await revoke_all_credentials(identity, session, user_id=user.id, reason="account_deletion")
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.ACCOUNT_DELETION_REQUESTED,
                          user_id=user.id, ip=ip, user_agent=user_agent,
                          details={"scheduled_for": user.deletion_scheduled_for.isoformat(),
                                   "sessions_revoked": sessions, "api_keys_revoked": keys})
    await _notify(identity.runtime, session, state="scheduled", to=user.email, name=user.display_name,
                  user_id=user.id, ip=ip, scheduled_for=user.deletion_scheduled_for.strftime(_WHEN))
    await session.commit()
    await identity.announce_user_changed(user.id)
    logger.info("account deletion requested", extra={"target_user_id": str(user.id)})
    return user


async def cancel_deletion(identity: IdentityService, session: AsyncSession, *, principal: AuthUser,
                          ip: str | None) -> User:
    """Keep the account. A conditional update, so it cannot race the purge into a half state."""
    user = await identity.get_user(session, user_id=principal.id)
    now = identity.clock.now()
    cancelled = await session.execute(
        update(User).where(User.id == user.id, User.deletion_scheduled_for.is_not(None))
        .values(deletion_requested_at=None, deletion_scheduled_for=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not cancelled.rowcount:  # type: ignore[attr-defined]
        await session.rollback()
        raise Conflict("No deletion is pending for this account.", code="no_deletion_pending")
    record_security_event(session, clock=identity.clock, kind=DeletionEventKind.CANCELLED, user_id=user.id, ip=ip)
    await _notify(identity.runtime, session, state="cancelled", to=user.email, name=user.display_name,
                  user_id=user.id, ip=ip)
    await session.commit()
    await session.refresh(user)
    logger.info("account deletion cancelled", extra={"target_user_id": str(user.id)})
    return user


async def purge_due_accounts(runtime: Runtime) -> list[uuid.UUID]:
    """Delete every account whose grace period is over; returns the ids purged.

    Each account is purged in a transaction of its own, so one failing stop hook delays only
    that account; the error is raised after the others are done (the job then retries)."""
    now = runtime.clock.now()
    async with runtime.db.session() as session:
        due = list(await session.scalars(
            select(User.id).where(User.deletion_scheduled_for <= now).order_by(User.deletion_scheduled_for)
        ))
    purged: list[uuid.UUID] = []
    failure: Exception | None = None
    for user_id in due:
        try:
            if await _purge_one(runtime, user_id, now):
                purged.append(user_id)
        except Exception as exc:
            logger.warning("could not purge account", extra={"target_user_id": str(user_id)}, exc_info=True)
            failure = failure or exc
    if failure is not None:
        raise failure
    return purged


async def _purge_one(runtime: Runtime, user_id: uuid.UUID, now: datetime) -> bool:
    async with runtime.db.transaction() as session:
        # the row lock (PostgreSQL) makes a concurrent cancel wait, or makes us see it
        user = await session.scalar(
            select(User).where(User.id == user_id, User.deletion_scheduled_for <= now).with_for_update()
        )
        if user is None:
            return False  # cancelled meanwhile
        await stop_account_activity(runtime, session, user_id=user_id, reason=StopReason.PURGE)
        email, name = user.email, user.display_name
        await session.execute(delete(User).where(User.id == user_id).execution_options(synchronize_session=False))
        # the farewell mail is not tied to the account (user_id=None), or the cascade would drop it
        await _notify(runtime, session, state="deleted", to=email, name=name, user_id=None, ip=None)
    cache = runtime.services.get("auth_cache")
    if cache is not None:
        cache.sessions.drop_user(user_id)
        cache.api_keys.drop_user(user_id)
    try:
        await runtime.bus.publish(Event(topic=Topics.USER_CHANGED, type="user.deleted",
                                        payload={"user_id": str(user_id)}))
    except Exception:
        logger.warning("could not broadcast the purge; caches expire on their own", exc_info=True)
    logger.info("account purged", extra={"target_user_id": str(user_id)})
    return True


async def _notify(runtime: Runtime, session: AsyncSession, *, state: str, to: str, name: str | None,
                  user_id: uuid.UUID | None, ip: str | None, scheduled_for: str | None = None) -> None:
    """Mail the ``account_deletion`` notice in the caller's transaction."""
    email_service = runtime.services.get("email")
    if email_service is None:  # a process without the job system sends no mail
        return
    await email_service.send(session, to=to, template=DELETION_TEMPLATE, user_id=user_id,
                             context={"state": state, "name": name, "ip": ip, "scheduled_for": scheduled_for,
                                      "occurred_at": runtime.clock.now().strftime(_WHEN)})


@job_handler(PURGE_JOB)
async def _purge_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    purged = await purge_due_accounts(ctx.runtime)
    return {"purged": len(purged)}
