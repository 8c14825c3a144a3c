"""Users, their login sessions with rotating refresh tokens, and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tradepilot.core.db import Base, UUIDPrimaryKey


class User(UUIDPrimaryKey, Base):
    __tablename__ = "user_account"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    plan: Mapped[str] = mapped_column(String(16), default="free")
    is_active: Mapped[bool] = mapped_column(default=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    email_verified_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime]
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    # two-factor authentication (identity.twofactor): the TOTP secret is encrypted at rest
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(512))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_counter: Mapped[int | None]  # the last accepted TOTP time step: a code works once
    # suspension (admin) and self-service deletion with a grace period
    suspended_at: Mapped[datetime | None]
    suspension_reason: Mapped[str | None] = mapped_column(String(255))
    deletion_requested_at: Mapped[datetime | None]
    deletion_scheduled_for: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class UserSession(UUIDPrimaryKey, Base):
    """One login on one device; its refresh tokens form one rotation family."""

    __tablename__ = "user_session"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship(lazy="raise")


class RefreshToken(UUIDPrimaryKey, Base):
    """A refresh token, stored only as HMAC-SHA-256; ``rotated_at`` marks it spent."""

    __tablename__ = "refresh_token"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_session.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]


class ApiKey(UUIDPrimaryKey, Base):
    """``tp_<lookup>_<secret>``: found by its public lookup part, verified by HMAC of the secret."""

    __tablename__ = "api_key"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    lookup: Mapped[str] = mapped_column(String(24), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


Index("ix_user_session_user_live", UserSession.user_id, UserSession.revoked_at)


class SecurityEvent(UUIDPrimaryKey, Base):
    """An entry of the account's security log (logins, 2FA, keys, password, admin actions)."""

    __tablename__ = "security_event"

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(48))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]


Index("ix_security_event_user_created", SecurityEvent.user_id, SecurityEvent.created_at)


class OneTimeToken(UUIDPrimaryKey, Base):
    """A single-use emailed token (password reset, email verification), stored only as HMAC."""

    __tablename__ = "one_time_token"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
