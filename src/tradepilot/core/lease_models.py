"""The lease table: who owns each named moving part, and its fencing token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base


class LeaseRow(Base):
    """One row per lease name, never deleted, so that ``token`` only ever grows.

    Whatever backend decides ownership (PostgreSQL advisory lock, database TTL, Redis), the
    token lives here, so a writer can check it in the same transaction as its write.
    ``expires_at`` is authoritative for the database TTL backend and informational for the
    others (acquisition time + TTL).
    """

    __tablename__ = "lease"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
