"""Tables of two-factor authentication: recovery codes, emailed one-time codes.

The TOTP secret itself lives on ``user_account`` (encrypted, see ``core.secrets_box``).
Codes are stored only as HMACs; ``used_at`` marks a code spent, set by a conditional
update so that two concurrent requests cannot both spend it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.secrets_box import register_encrypted_column
from tradepilot.identity.models import User


class RecoveryCode(UUIDPrimaryKey, Base):
    """One of the ten one-time codes that stand in for the authenticator app."""

    __tablename__ = "two_factor_recovery_code"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


Index("ix_two_factor_recovery_code_user_hash", RecoveryCode.user_id, RecoveryCode.code_hash, unique=True)


class EmailCode(UUIDPrimaryKey, Base):
    """A six-digit login code sent by email: short-lived, one use, a few attempts."""

    __tablename__ = "two_factor_email_code"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]  # also set when a newer code replaces this one
    attempts: Mapped[int] = mapped_column(default=0)


Index("ix_two_factor_email_code_user_created", EmailCode.user_id, EmailCode.created_at)

register_encrypted_column(User.totp_secret_encrypted)
