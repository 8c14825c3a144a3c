"""The process's long-lived parts, built once from settings and shared by every request."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tradepilot.config import Settings
from tradepilot.core.bus import EventBus, InProcessBus
from tradepilot.core.clock import Clock, LiveClock
from tradepilot.core.db import Database
from tradepilot.core.metrics import Metrics

logger = logging.getLogger("tradepilot.runtime")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    bus: EventBus
    clock: Clock
    metrics: Metrics
    redis: Any = None  # redis.asyncio.Redis when TRADEPILOT_REDIS_URL is set
    services: dict[str, Any] = field(default_factory=dict)

    def key(self, *parts: str) -> str:
        """A Redis key or channel under this deployment's prefix."""
        return self.settings.redis_prefix + ":".join(parts)


def build_runtime(settings: Settings, *, clock: Clock | None = None) -> Runtime:
    db = Database(settings.database_url, echo=settings.database_echo)
    redis = None
    bus: EventBus
    if settings.redis_url:
        from redis.asyncio import Redis

        from tradepilot.core.redis_bus import RedisBus

        redis = Redis.from_url(settings.redis_url, decode_responses=False)
        bus = RedisBus(redis, prefix=settings.redis_prefix)
    else:
        bus = InProcessBus()
    return Runtime(settings=settings, db=db, bus=bus, clock=clock or LiveClock(), metrics=Metrics(), redis=redis)
