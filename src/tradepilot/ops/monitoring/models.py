"""Tables of the monitoring system: replica uptime segments, error groups and alert rules.

They live in the database so that every replica sees the same errors, uptime and alert state,
and a restart or an outage (no replica writing heartbeats) leaves a gap that counts as down.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey


class UptimeSegment(UUIDPrimaryKey, Base):
    """A stretch of time one replica was up: from its first heartbeat to its last (or its clean stop).

    A heartbeat extends the replica's current segment when it comes within the vouched interval
    (two heartbeat intervals); a later one (the process was frozen or down) starts a new segment,
    so the gap counts as down time.
    """

    __tablename__ = "ops_uptime_segment"
    __table_args__ = (Index("ix_ops_uptime_segment_last_beat", "last_beat_at"),)

    replica_id: Mapped[str] = mapped_column(String(128))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    last_beat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]  # a clean stop: covered exactly up to here, not vouched beyond


class ErrorGroup(Base):
    """Unhandled errors with the same fingerprint (exception type, route and stack), counted together."""

    __tablename__ = "ops_error_group"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    exception_type: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)  # of the first occurrence, secrets redacted
    route: Mapped[str | None] = mapped_column(String(255))
    logger: Mapped[str] = mapped_column(String(255))
    count: Mapped[int]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    sample_trace: Mapped[str] = mapped_column(Text)  # of the latest occurrence, secrets redacted
    last_request_id: Mapped[str | None] = mapped_column(String(64))


class AlertRuleState:
    OK = "ok"
    FIRING = "firing"


class MonitoringRule(UUIDPrimaryKey, Base):
    """An operator's alert rule on a measurement; fires (notifying admins) once, then resolves."""

    __tablename__ = "ops_alert_rule"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    metric: Mapped[str] = mapped_column(String(40))
    operator: Mapped[str] = mapped_column(String(2))  # ">" or "<"
    threshold: Mapped[float] = mapped_column(Float)  # a measurement, never money
    window_seconds: Mapped[int]
    enabled: Mapped[bool] = mapped_column(default=True)
    state: Mapped[str] = mapped_column(String(16), default=AlertRuleState.OK)
    last_value: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    fired_by: Mapped[str | None] = mapped_column(String(128))  # the replica whose measurement fired it
    resolved_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
