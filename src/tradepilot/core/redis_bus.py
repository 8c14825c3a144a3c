"""Redis pub/sub bus: every replica receives every event published by any replica."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from typing import Any

from tradepilot.core.bus import Handler, Subscription, _deliver, decode, encode
from tradepilot.core.events import Event

logger = logging.getLogger("tradepilot.bus")


class RedisBus:
    """One pattern subscription per process (``<prefix>bus:*``); local handlers filter by topic."""

    def __init__(self, redis: Any, *, prefix: str) -> None:
        self.redis = redis
        self.channel_prefix = f"{prefix}bus:"
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")
            await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        for task in list(self._tasks):
            task.cancel()
        self._subs.clear()

    async def publish(self, event: Event) -> None:
        await self.redis.publish(self.channel_prefix + event.topic, encode(event))

    async def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        sub = Subscription(self, pattern, handler)
        self._subs.append(sub)
        return sub

    async def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _read_forever(self) -> None:
        backoff = 0.2
        while True:
            try:
                self._pubsub = self.redis.pubsub()
                await self._pubsub.psubscribe(self.channel_prefix + "*")
                self._ready.set()
                backoff = 0.2
                async for message in self._pubsub.listen():
                    if message.get("type") == "pmessage":
                        self._dispatch(decode(message["data"]))
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                raise
            except Exception:
                logger.warning("redis bus connection lost; reconnecting", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, event: Event) -> None:
        for sub in list(self._subs):
            if fnmatch.fnmatchcase(event.topic, sub.pattern):
                task = asyncio.get_running_loop().create_task(_deliver(sub.handler, event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
