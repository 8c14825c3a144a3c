"""Request and response bodies of the monitoring endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from tradepilot.core.schemas import Schema

MetricName = Literal["error_rate", "latency_p95_ms", "feed_staleness_seconds", "disk_free_percent",
                     "backup_age_hours"]


class AlertRuleIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    metric: MetricName
    operator: Literal[">", "<"]
    threshold: float = Field(allow_inf_nan=False)
    window_seconds: int = Field(300, ge=10, le=3600, description="error_rate and latency: the window measured")
    enabled: bool = True


class AlertRuleOut(Schema):
    id: uuid.UUID
    name: str
    metric: str
    operator: str
    threshold: float
    window_seconds: int
    enabled: bool
    state: str
    last_value: float | None
    last_evaluated_at: datetime | None
    fired_at: datetime | None
    fired_by: str | None
    resolved_at: datetime | None
    created_at: datetime


class AlertRulesOut(Schema):
    items: list[AlertRuleOut]
    metrics: dict[str, str]


class ErrorGroupOut(Schema):
    fingerprint: str
    exception_type: str
    message: str
    route: str | None
    logger: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    sample_trace: str
    last_request_id: str | None


class ErrorGroupsOut(Schema):
    items: list[ErrorGroupOut]


class OutageOut(Schema):
    start: datetime
    end: datetime
    seconds: float


class AvailabilityOut(Schema):
    window: str
    observed_seconds: float
    down_seconds: float
    availability: float | None
    outages: list[OutageOut]


class UptimeOut(Schema):
    heartbeat_seconds: float
    windows: list[AvailabilityOut]


class RestartAccepted(Schema):
    restarting: bool
    exit_code: int
    detail: str
