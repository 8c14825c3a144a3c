"""Bodies of the admin user-management API (/api/admin/users)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from tradepilot.core.schemas import Schema
from tradepilot.identity.plans import PlanName

Role = Literal["user", "admin"]
UserStatus = Literal["active", "suspended", "pending_deletion", "inactive"]


class AdminUserView(Schema):
    id: uuid.UUID
    email: str
    display_name: str | None
    role: str
    plan: str
    status: UserStatus = Field(description="suspended wins over pending_deletion when both apply")
    email_verified: bool
    two_factor_enabled: bool
    created_at: datetime
    updated_at: datetime
    suspended_at: datetime | None
    suspension_reason: str | None
    deletion_requested_at: datetime | None
    deletion_scheduled_for: datetime | None


class AdminUserPage(Schema):
    items: list[AdminUserView]
    next_cursor: str | None = None


class PlanChange(Schema):
    plan: PlanName


class RoleChange(Schema):
    role: Role


class SuspensionRequest(Schema):
    reason: str = Field(min_length=1, max_length=255,
                        description="Kept in the account's security log (its owner can read it once reactivated)")

    @field_validator("reason")
    @classmethod
    def _clean(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ord(c) < 32 for c in value):
            raise ValueError("a reason is required, without control characters")
        return value


class SecurityEventView(Schema):
    id: uuid.UUID
    kind: str
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    created_at: datetime


class AdminSessionView(Schema):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


class AdminApiKeyView(Schema):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class UserActivity(Schema):
    user: AdminUserView
    security_events: list[SecurityEventView] = Field(description="Most recent first")
    sessions: list[AdminSessionView] = Field(description="Live sessions, most recently used first")
    api_keys: list[AdminApiKeyView] = Field(description="Every key, revoked ones included, newest first")
    usage: dict[str, int] = Field(description="What the user currently uses against their limits")
    limits: dict[str, int] = Field(description="Effective limits: min(the user's own, the plan's)")
