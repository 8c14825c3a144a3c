"""Tables of the login guard: failed-login counters, lockouts, known client IPs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey


class LoginFailureCounter(Base):
    """Failed logins of one account, from its known addresses or from anywhere else.

    Keyed by an HMAC of the normalised email, not by user id, so that an address without an
    account is counted and locked exactly like one with (nothing tells them apart), and the
    table holds no email in clear. ``source`` is ``known`` (an address the account has
    logged in from before) or ``other``: failures from elsewhere cannot lock the owner out
    at home.
    """

    __tablename__ = "login_failure_counter"

    account_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(8), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


Index("ix_login_failure_counter_updated", LoginFailureCounter.updated_at)


class KnownLoginAddress(UUIDPrimaryKey, Base):
    """An address a user has logged in from (IPv4 address, or IPv6 /64 network)."""

    __tablename__ = "known_login_address"
    __table_args__ = (UniqueConstraint("user_id", "address"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(49))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
