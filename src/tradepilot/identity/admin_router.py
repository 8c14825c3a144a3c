"""HTTP edge of user management for administrators: /api/admin/users.

Every route depends on ``AdminUser`` (role admin *and* the ``admin`` scope): a user answers
403 ``admin_required``, and so does an admin's API key without the ``admin`` scope. The ids
in these paths are other users' ids by design; the ownership-inventory test allow-lists
them because they depend on ``get_admin``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query

from tradepilot.core.deps import ClientIP, DbSession
from tradepilot.core.routing import api_router
from tradepilot.identity import admin_service
from tradepilot.identity.admin_schemas import (
    AdminUserPage,
    AdminUserView,
    PlanChange,
    Role,
    RoleChange,
    SuspensionRequest,
    UserActivity,
    UserStatus,
)
from tradepilot.identity.deps import AdminUser, Identity, get_admin
from tradepilot.identity.models import User
from tradepilot.identity.plans import PlanName

router = api_router(prefix="/api/admin/users", tags=["admin"], dependencies=[Depends(get_admin)])


async def target_user(user_id: uuid.UUID, admin: AdminUser, db: DbSession) -> User:
    """The user named in the path (after the admin check, so non-admins learn nothing)."""
    return await admin_service.get_user(db, user_id=user_id)


TargetUser = Annotated[User, Depends(target_user)]


@router.get("", response_model=AdminUserPage)
async def list_users(
    admin: AdminUser,
    db: DbSession,
    q: Annotated[str | None, Query(max_length=320, description="A part of the email address")] = None,
    plan: PlanName | None = None,
    role: Role | None = None,
    status: UserStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AdminUserPage:
    """Search users by email, plan, role and status; newest first, paginated."""
    users, next_cursor = await admin_service.list_users(db, q=q, plan=plan, role=role, status=status, limit=limit,
                                                        cursor=cursor)
    return AdminUserPage(items=[admin_service.view_of(u) for u in users], next_cursor=next_cursor)


@router.get("/{user_id}", response_model=AdminUserView)
async def get_user(target: TargetUser) -> AdminUserView:
    return admin_service.view_of(target)


@router.put("/{user_id}/plan", response_model=AdminUserView)
async def change_plan(body: PlanChange, target: TargetUser, admin: AdminUser, db: DbSession, identity: Identity,
                      ip: ClientIP) -> AdminUserView:
    """Set the user's plan (there is no billing in this release). Their limits change at once."""
    user = await admin_service.change_plan(identity, db, admin=admin, target=target, plan=body.plan, ip=ip)
    return admin_service.view_of(user)


@router.put("/{user_id}/role", response_model=AdminUserView)
async def change_role(body: RoleChange, target: TargetUser, admin: AdminUser, db: DbSession, identity: Identity,
                      ip: ClientIP) -> AdminUserView:
    """Promote to admin or demote to user. The last active admin cannot be demoted (409 `last_admin`)."""
    user = await admin_service.change_role(identity, db, admin=admin, target=target, role=body.role, ip=ip)
    return admin_service.view_of(user)


@router.post("/{user_id}/suspend", response_model=AdminUserView)
async def suspend(body: SuspensionRequest, target: TargetUser, admin: AdminUser, db: DbSession, identity: Identity,
                  ip: ClientIP) -> AdminUserView:
    """Suspend: running work stops, every session and API key is revoked on every replica at
    once, and logging in answers 403 `account_suspended` until reactivation."""
    user = await admin_service.suspend(identity, db, admin=admin, target=target, reason=body.reason, ip=ip)
    return admin_service.view_of(user)


@router.post("/{user_id}/reactivate", response_model=AdminUserView)
async def reactivate(target: TargetUser, admin: AdminUser, db: DbSession, identity: Identity,
                     ip: ClientIP) -> AdminUserView:
    """Lift a suspension. The user logs in again; revoked API keys stay revoked."""
    user = await admin_service.reactivate(identity, db, admin=admin, target=target, ip=ip)
    return admin_service.view_of(user)


@router.get("/{user_id}/activity", response_model=UserActivity)
async def user_activity(target: TargetUser, db: DbSession, identity: Identity,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> UserActivity:
    """The user's security log (most recent first), live sessions, API keys, usage and limits."""
    return await admin_service.activity(identity, db, target=target, limit=limit)
