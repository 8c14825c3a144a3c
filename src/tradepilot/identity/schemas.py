"""Request and response bodies of the identity API."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime
from typing import Literal

from pydantic import EmailStr, Field, field_validator

from tradepilot.core.schemas import Schema


class Credentials(Schema):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class LoginRequest(Credentials):
    otp: str | None = Field(default=None, max_length=32,
                            description="A TOTP code or a recovery code, when two-factor authentication is on")


class RefreshRequest(Schema):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutRequest(Schema):
    refresh_token: str | None = Field(default=None, max_length=512)


class TokenPair(Schema):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserProfile(Schema):
    """The one representation of "me": never a hash, never a secret."""

    id: uuid.UUID
    email: str
    display_name: str | None
    timezone: str
    role: str
    plan: str
    email_verified: bool
    created_at: datetime


class ProfileUpdate(Schema):
    display_name: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in zoneinfo.available_timezones():
            raise ValueError("unknown IANA time zone")
        return value

    @field_validator("display_name")
    @classmethod
    def _clean_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if any(ord(c) < 32 for c in value):
            raise ValueError("control characters are not allowed")
        return value or None


class SessionInfo(Schema):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class PasswordChange(Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class ResetRequest(Schema):
    email: EmailStr


class ResetConfirm(Schema):
    token: str = Field(min_length=10, max_length=200)
    new_password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(default=None, max_length=32, description="Required when two-factor authentication is on")


class TokenBody(Schema):
    token: str = Field(min_length=10, max_length=200)


class Accepted(Schema):
    status: Literal["accepted"] = "accepted"
    detail: str
