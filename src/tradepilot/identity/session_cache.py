"""Per-process cache of live sessions and API keys, invalidated over the bus.

Every request must see revocations at once, but a database read per request is waste. Each
process caches "session S of user U is live" for a few seconds; revocation publishes an
event that every replica's cache applies immediately. If an event were lost, the entry
still expires within ``session_cache_seconds``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tradepilot.core.events import Event, Topics
from tradepilot.identity.principal import AuthUser
from tradepilot.runtime import Runtime

K = TypeVar("K")
V = TypeVar("V", bound="AuthUser | CachedApiKey")
MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class CachedApiKey:
    principal: AuthUser
    secret_hash: str
    allowed_ips: tuple[str, ...]

    @property
    def id(self) -> uuid.UUID:
        """The owning user's id (what ``drop_user`` matches on)."""
        return self.principal.id


class TTLCache(Generic[K, V]):
    def __init__(self, runtime: Runtime) -> None:
        self._clock = runtime.clock
        self._ttl = runtime.settings.session_cache_seconds
        self._entries: dict[K, tuple[float, V | None]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        hit = self._entries.get(key)
        now = self._clock.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, value)
        return value

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_user(self, user_id: uuid.UUID) -> None:
        for key, (_, value) in list(self._entries.items()):
            if value is not None and value.id == user_id:
                self._entries.pop(key, None)


class AuthCache:
    def __init__(self, runtime: Runtime) -> None:
        self.sessions: TTLCache[uuid.UUID, AuthUser] = TTLCache(runtime)
        self.api_keys: TTLCache[str, CachedApiKey] = TTLCache(runtime)

    async def on_event(self, event: Event) -> None:
        user_id = event.payload.get("user_id")
        if event.topic == Topics.SESSION_REVOKED and event.payload.get("session_id"):
            self.sessions.drop(uuid.UUID(event.payload["session_id"]))
        if event.topic == Topics.API_KEY_REVOKED and event.payload.get("lookup"):
            self.api_keys.drop(event.payload["lookup"])
        if user_id and (event.topic == Topics.USER_CHANGED or event.payload.get("all_sessions")):
            self.sessions.drop_user(uuid.UUID(user_id))
            self.api_keys.drop_user(uuid.UUID(user_id))


async def install_session_cache(runtime: Runtime) -> None:
    cache = AuthCache(runtime)
    runtime.services["auth_cache"] = cache
    await runtime.bus.subscribe("identity.*", cache.on_event)
