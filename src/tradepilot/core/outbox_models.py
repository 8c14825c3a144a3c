"""Tables of the transactional outbox: events, per-user sequence counters, consumer receipts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base


class OutboxEvent(Base):
    """One domain event, written in the same transaction as the change it describes.

    ``published_at`` stays NULL until the relay has handed the event to the bus; published
    events are pruned after a retention period. ``notify`` is true while the event still has
    to be turned into a notification (set at emit for the events that make one, cleared in the
    transaction that makes it): the notifier's queue, like the relay's, is a partial index of
    the rows with work left, so finding work never scans handled events.
    """

    __tablename__ = "outbox_event"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[uuid.UUID | None]  # indexed by the (user_id, seq) unique constraint
    seq: Mapped[int | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    notify: Mapped[bool | None]

    __table_args__ = (
        # Two events of one user never share a sequence number (NULL user ids never clash).
        UniqueConstraint("user_id", "seq"),
        # The relay's queue: only unpublished rows, in relay order.
        Index(
            "ix_outbox_event_pending",
            "created_at",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # The notifier's queue: only events still to notify, in event order.
        Index(
            "ix_outbox_event_notify",
            "created_at",
            "id",
            postgresql_where=text("notify = true"),
            sqlite_where=text("notify = 1"),
        ),
    )


class UserEventSeq(Base):
    """The last sequence number given to one user's events."""

    __tablename__ = "user_event_seq"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    last_seq: Mapped[int]


class ConsumedEvent(Base):
    """A receipt: ``consumer`` has handled ``event_id`` (deduplication of redeliveries)."""

    __tablename__ = "consumed_event"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    consumed_at: Mapped[datetime] = mapped_column(index=True)
