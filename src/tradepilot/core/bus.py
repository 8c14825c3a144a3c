"""The event bus: in-process by default, Redis pub/sub across replicas.

The bus is for fan-out of live events (session revocations, WebSocket pushes). It is
at-most-once per subscriber; durability comes from the outbox (``core.outbox``), which
relays each event at least once, and consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from tradepilot.core.events import Event

logger = logging.getLogger("tradepilot.bus")

Handler = Callable[[Event], Awaitable[None]]


class Subscription:
    def __init__(self, bus: EventBus, pattern: str, handler: Handler) -> None:
        self.bus, self.pattern, self.handler = bus, pattern, handler

    async def close(self) -> None:
        await self.bus.unsubscribe(self)


class EventBus(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, event: Event) -> None: ...
    async def subscribe(self, pattern: str, handler: Handler) -> Subscription: ...
    async def unsubscribe(self, subscription: Subscription) -> None: ...


async def _deliver(handler: Handler, event: Event) -> None:
    try:
        await handler(event)
    except Exception:
        logger.exception("event handler failed", extra={"topic": event.topic, "event_id": event.id})


class InProcessBus:
    """Delivers to subscribers in this process; each handler runs in its own task."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._subs.clear()

    async def publish(self, event: Event) -> None:
        self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        for sub in list(self._subs):
            if fnmatch.fnmatchcase(event.topic, sub.pattern):
                task = asyncio.get_running_loop().create_task(_deliver(sub.handler, event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        sub = Subscription(self, pattern, handler)
        self._subs.append(sub)
        return sub

    async def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)

    async def drain(self) -> None:
        """Wait for in-flight deliveries (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def encode(event: Event) -> str:
    return json.dumps(event.to_dict(), separators=(",", ":"), default=str)


def decode(raw: str | bytes) -> Event:
    return Event.from_dict(json.loads(raw))
