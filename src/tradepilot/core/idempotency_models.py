"""The table behind ``Idempotency-Key``: one row per (owner, method, route, key)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base


class IdempotencyRecord(Base):
    """A claimed key: ``in_flight`` while its request runs, then the stored answer.

    ``locked_until`` bounds an in-flight claim: a process that crashed mid-request leaves a
    row that another request may take over once the lock has expired. ``attempt`` fences
    that take-over: the old request's late completion no longer matches and is discarded.
    """

    __tablename__ = "idempotency_record"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))  # "user:<uuid>"
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(255))  # the route template, not the concrete path
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | completed
    attempt: Mapped[int] = mapped_column(default=1)
    locked_until: Mapped[datetime]
    response_status: Mapped[int | None]
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("owner", "method", "route", "key"),
        Index("ix_idempotency_record_state_created", "state", "created_at"),
    )
