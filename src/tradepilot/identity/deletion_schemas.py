"""Bodies of the account-deletion endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tradepilot.core.schemas import Schema


class DeletionRequest(Schema):
    password: str = Field(min_length=1, max_length=1024, description="Your current password")
    otp: str | None = Field(default=None, max_length=32,
                            description="A TOTP or recovery code; required when two-factor authentication is on")


class DeletionStatus(Schema):
    pending: bool
    requested_at: datetime | None = None
    scheduled_for: datetime | None = Field(default=None,
                                           description="When the account and its data will be deleted")
    grace_days: int = Field(description="Days between the request and the deletion")
