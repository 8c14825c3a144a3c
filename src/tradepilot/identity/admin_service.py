"""Admin use cases: find users, change plan and role, suspend and reactivate, read activity.

Every change records ``SecurityEventKind.ADMIN_ACTION`` in the target user's security log,
with the acting admin's id in ``details``, and is announced on the bus so that every
replica reloads the user's credentials at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import BadRequest, Conflict, NotFound
from tradepilot.identity.admin_schemas import (
    AdminApiKeyView,
    AdminSessionView,
    AdminUserView,
    SecurityEventView,
    UserActivity,
    UserStatus,
)
from tradepilot.identity.lifecycle import StopReason, revoke_all_credentials, stop_account_activity
from tradepilot.identity.models import ApiKey, SecurityEvent, User, UserSession
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.identity.service import IdentityService
from tradepilot.identity.usage import current_usage


def status_of(user: User) -> UserStatus:
    if user.suspended_at is not None:
        return "suspended"
    if user.deletion_scheduled_for is not None:
        return "pending_deletion"
    return "active" if user.is_active else "inactive"


def view_of(user: User) -> AdminUserView:
    return AdminUserView(
        id=user.id, email=user.email, display_name=user.display_name, role=user.role, plan=user.plan,
        status=status_of(user), email_verified=user.email_verified_at is not None,
        two_factor_enabled=user.totp_enabled_at is not None, created_at=user.created_at, updated_at=user.updated_at,
        suspended_at=user.suspended_at, suspension_reason=user.suspension_reason,
        deletion_requested_at=user.deletion_requested_at, deletion_scheduled_for=user.deletion_scheduled_for,
    )


# --- finding users ---------------------------------------------------------------------

def _encode_cursor(user: User) -> str:
    raw = json.dumps([user.created_at.isoformat(), str(user.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, user_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(user_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this endpoint returned.", code="invalid_cursor") from None


def _status_filter(status: UserStatus) -> ColumnElement[bool]:
    if status == "suspended":
        return User.suspended_at.is_not(None)
    not_suspended = User.suspended_at.is_(None)
    if status == "pending_deletion":
        return and_(not_suspended, User.deletion_scheduled_for.is_not(None))
    if status == "inactive":
        return and_(not_suspended, User.deletion_scheduled_for.is_(None), User.is_active.is_(False))
    return and_(not_suspended, User.deletion_scheduled_for.is_(None), User.is_active.is_(True))


async def list_users(session: AsyncSession, *, q: str | None, plan: str | None, role: str | None,
                     status: UserStatus | None, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
    """Newest first; ``q`` is a case-insensitive substring of the email."""
    query = select(User)
    if q:
        query = query.where(User.email.contains(q.strip().lower(), autoescape=True))
    if plan:
        query = query.where(User.plan == plan)
    if role:
        query = query.where(User.role == role)
    if status:
        query = query.where(_status_filter(status))
    if cursor:
        created, after_id = _decode_cursor(cursor)
        query = query.where(or_(User.created_at < created, and_(User.created_at == created, User.id < after_id)))
    rows = list(await session.scalars(query.order_by(User.created_at.desc(), User.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return page, _encode_cursor(page[-1]) if more and page else None


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    """Any user, whatever their status; 404 if there is none."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found.", code="user_not_found")
    return user


# --- changes ---------------------------------------------------------------------------

def _audit(identity: IdentityService, session: AsyncSession, *, admin: AuthUser, target: User, action: str,
           ip: str | None, **details: Any) -> None:
    record_security_event(session, clock=identity.clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=target.id,
                          ip=ip, details={"action": action, "admin_id": str(admin.id), **details})


async def _commit_and_announce(identity: IdentityService, session: AsyncSession, target: User) -> User:
    await session.commit()
    await identity.announce_user_changed(target.id)
    return target


async def change_plan(identity: IdentityService, session: AsyncSession, *, admin: AuthUser, target: User,
                      plan: str, ip: str | None) -> User:
    """No billing in this release: the plan is whatever an admin sets. Limits follow at once."""
    previous = target.plan
    if previous != plan:
        target.plan, target.updated_at = plan, identity.clock.now()
        _audit(identity, session, admin=admin, target=target, action="plan_changed", ip=ip,
               previous=previous, plan=plan)
    return await _commit_and_announce(identity, session, target)


async def change_role(identity: IdentityService, session: AsyncSession, *, admin: AuthUser, target: User,
                      role: str, ip: str | None) -> User:
    """Promote or demote. The last active admin cannot be demoted (they would lock everyone out)."""
    previous = target.role
    if previous == role:
        return target
    if previous == "admin":
        # lock the admin rows (PostgreSQL) so two admins demoting each other cannot both win
        admins = await session.scalars(
            select(User.id).where(User.role == "admin", User.is_active.is_(True), User.suspended_at.is_(None))
            .with_for_update()
        )
        if not set(admins) - {target.id}:
            await session.rollback()
            raise Conflict("This is the last active administrator; promote another one first.", code="last_admin")
    target.role, target.updated_at = role, identity.clock.now()
    _audit(identity, session, admin=admin, target=target, action="role_changed", ip=ip, previous=previous, role=role)
    return await _commit_and_announce(identity, session, target)


async def suspend(identity: IdentityService, session: AsyncSession, *, admin: AuthUser, target: User, reason: str,
                  ip: str | None) -> User:
    """Stop the account now: its running work stops, every session and API key is revoked
    (on every replica at once), and logins answer 403 ``account_suspended`` until reactivated."""
    if target.id == admin.id:
        raise Conflict("You cannot suspend your own account.", code="cannot_suspend_self")
    if target.suspended_at is not None:
        raise Conflict("The account is already suspended.", code="already_suspended")
    await stop_account_activity(identity.runtime, session, user_id=target.id, reason=StopReason.SUSPENDED)
    now = identity.clock.now()
    target.suspended_at, target.suspension_reason, target.updated_at = now, reason, now
    sessions, keys = await revoke_all_credentials(identity, session, user_id=target.id, reason="suspended")
    _audit(identity, session, admin=admin, target=target, action="suspended", ip=ip, reason=reason,
           sessions_revoked=sessions, api_keys_revoked=keys)
    return await _commit_and_announce(identity, session, target)


async def reactivate(identity: IdentityService, session: AsyncSession, *, admin: AuthUser, target: User,
                     ip: str | None) -> User:
    """Lift a suspension. Revoked sessions and keys stay revoked: the user logs in again."""
    if target.suspended_at is None:
        raise Conflict("The account is not suspended.", code="not_suspended")
    reason = target.suspension_reason
    target.suspended_at, target.suspension_reason, target.updated_at = None, None, identity.clock.now()
    _audit(identity, session, admin=admin, target=target, action="reactivated", ip=ip, suspension_reason=reason)
    return await _commit_and_announce(identity, session, target)


# --- activity --------------------------------------------------------------------------

async def activity(identity: IdentityService, session: AsyncSession, *, target: User, limit: int) -> UserActivity:
    now = identity.clock.now()
    events = await session.scalars(
        select(SecurityEvent).where(SecurityEvent.user_id == target.id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc()).limit(limit)
    )
    sessions = await session.scalars(
        select(UserSession)
        .where(UserSession.user_id == target.id, UserSession.revoked_at.is_(None), UserSession.expires_at > now)
        .order_by(UserSession.last_used_at.desc())
    )
    keys = await session.scalars(select(ApiKey).where(ApiKey.user_id == target.id)
                                 .order_by(ApiKey.created_at.desc()).limit(limit))
    own_limits = (target.settings or {}).get("limits") or {}
    return UserActivity(
        user=view_of(target),
        security_events=[SecurityEventView.model_validate(e) for e in events],
        sessions=[AdminSessionView.model_validate(s) for s in sessions],
        api_keys=[AdminApiKeyView(id=k.id, name=k.name, prefix=f"tp_{k.lookup}", scopes=list(k.scopes),
                                  created_at=k.created_at, last_used_at=k.last_used_at, expires_at=k.expires_at,
                                  revoked_at=k.revoked_at) for k in keys],
        usage=await current_usage(session, target.id),
        limits=effective_limits(target.plan, dict(own_limits)).as_dict(),
    )
