"""The knobs of the job system, read from ``Settings`` (with defaults until they exist there)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tradepilot.config import Settings


@dataclass(frozen=True)
class JobsConfig:
    inprocess: bool | None = None  # run jobs in this process; None: only without Redis
    concurrency: int = 8  # jobs at once per process
    poll_seconds: float = 1.0  # how often the dispatcher, reaper and scheduler look
    heartbeat_timeout_seconds: float = 60.0  # a running job silent this long is reaped
    backoff_base_seconds: float = 5.0  # first retry after 2.5..5 s, then doubling
    backoff_max_seconds: float = 3600.0
    redispatch_seconds: float = 300.0  # a dispatched job not started by then is sent again
    shutdown_grace_seconds: float = 10.0  # running jobs get this long before being re-queued
    schedule_retention_days: int = 7  # how long firings are remembered
    retention_days: int = 30  # finished jobs older than this are deleted

    @property
    def heartbeat_interval_seconds(self) -> float:
        return max(self.heartbeat_timeout_seconds / 4, 0.05)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> JobsConfig:
        """``jobs_<field>`` settings win over the defaults; ``overrides`` win over both."""
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            setting = "jobs_poll_seconds" if name == "poll_seconds" else f"jobs_{name}"
            if hasattr(settings, setting):
                values[name] = getattr(settings, setting)
        return replace(cls(**values), **overrides)
