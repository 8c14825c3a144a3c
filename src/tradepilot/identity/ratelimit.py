"""Request rate limits: per user (or per client IP when anonymous), per endpoint class, by plan.

Every API route runs ``enforce_rate_limit`` (an app-wide dependency). It finds the route's
endpoint class, who is calling, and takes one request from that caller's moving window
(``limits`` library: Redis when ``TRADEPILOT_REDIS_URL`` is set, so every replica counts
together; in memory otherwise). ``RateLimitHeadersMiddleware`` then puts ``X-RateLimit-*``
on the response, whatever its status; a refused request is 429 ``rate_limited`` with
``Retry-After``.

Keys never mix: a signed-in caller spends ``user:<id>``, an anonymous one ``ip:<address>``
(the client IP from ``core.http``, which honours only trusted proxies; IPv6 by /64). A
request whose credentials do not check out is anonymous, so nobody can spend another
user's budget by presenting their user id or a guessed key.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from prometheus_client import Counter
from sqlalchemy import select
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradepilot.core.deps import get_client_ip
from tradepilot.core.errors import RateLimited, TradePilotError
from tradepilot.core.events import Event, Topics
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.service import ip_allowed
from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ratelimit")

# Endpoint classes. Each has its own window per caller.
AUTH = "auth"  # login, register, password reset, email verification, 2FA: strict
TRADE = "trade"  # order placing: its own budget, so reading cannot starve trading
DEFAULT = "default"
EXEMPT = "exempt"  # liveness and metrics: never limited
ENDPOINT_CLASSES = (AUTH, TRADE, DEFAULT, EXEMPT)

CLASS_EXTRA_KEY = "x-rate-limit-class"
_AUTH_PATH_PREFIXES = ("/api/auth/login", "/api/auth/register", "/api/auth/reset-password",
                       "/api/auth/verify-email", "/api/auth/2fa", "/api/auth/reauthenticate")
_EXEMPT_PATHS = frozenset({"/health", "/metrics"})
STATE_KEY = "rate_limit"
MAX_CACHED_USERS = 50_000


def limit_class(name: str) -> dict[str, Any]:
    """``openapi_extra`` putting a route in a class: ``@router.post(..., openapi_extra=limit_class(TRADE))``."""
    if name not in ENDPOINT_CLASSES:
        raise ValueError(f"unknown endpoint class {name!r}")
    return {CLASS_EXTRA_KEY: name}


def endpoint_class(route: Any) -> str:
    """The class a route declared (``limit_class``), else ``auth`` for the sign-in family, else default."""
    declared = (getattr(route, "openapi_extra", None) or {}).get(CLASS_EXTRA_KEY)
    if declared:
        return str(declared)
    path = str(getattr(route, "path", ""))
    if path in _EXEMPT_PATHS:
        return EXEMPT
    if path.startswith(_AUTH_PATH_PREFIXES):
        return AUTH
    return DEFAULT


def address_key(ip: str | None) -> str:
    """An IPv4 address as is, an IPv6 address by its /64 (one subscriber's block)."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@lru_cache(maxsize=1024)
def per_minute(amount: int) -> RateLimitItem:
    return RateLimitItemPerMinute(amount, namespace="tp")


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until at least one more request is allowed

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_after)

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset_after)}


class OwnLimitsCache:
    """Each user's own limits (``settings.limits``) per process for a few seconds; a settings
    change empties the entry on every replica (``identity.user_changed`` on the bus)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._ttl = runtime.settings.session_cache_seconds
        self._entries: dict[uuid.UUID, tuple[float, dict[str, int]]] = {}

    async def get(self, user_id: uuid.UUID) -> dict[str, int]:
        now = self._runtime.clock.monotonic()
        hit = self._entries.get(user_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._runtime.db.session() as session:
            settings = await session.scalar(select(User.settings).where(User.id == user_id))
        own = {str(k): int(v) for k, v in dict((settings or {}).get("limits") or {}).items()}
        if len(self._entries) >= MAX_CACHED_USERS:
            self._entries.clear()
        self._entries[user_id] = (now + self._ttl, own)
        return own

    def drop(self, user_id: uuid.UUID) -> None:
        self._entries.pop(user_id, None)

    async def on_event(self, event: Event) -> None:
        if event.topic == Topics.USER_CHANGED and event.payload.get("user_id"):
            self.drop(uuid.UUID(event.payload["user_id"]))


class RateLimiter:
    """``runtime.services["rate_limiter"]``: moving windows in Redis or in memory."""

    def __init__(self, runtime: Runtime, *, storage: Storage | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.storage = storage or _storage_for(runtime)
        self.windows = MovingWindowRateLimiter(self.storage)
        self.own_limits = OwnLimitsCache(runtime)
        self.refused = Counter("tradepilot_rate_limited_total", "Requests refused by the rate limiter, by class.",
                               ["endpoint_class"], registry=runtime.metrics.registry)

    def budget(self, cls: str, principal: AuthUser | None, own: dict[str, int]) -> int:
        if cls == AUTH:
            return self.settings.rate_limit_auth_per_minute
        if principal is None:
            return self.settings.rate_limit_anonymous_per_minute
        # a user's own limit can only tighten the plan's; at least 1, so they can loosen it again
        return max(1, effective_limits(principal.plan, own).requests_per_minute)

    async def check(self, *, cls: str, principal: AuthUser | None, ip: str | None) -> RateLimitDecision:
        """Take one request from the caller's window of ``cls``."""
        own = await self.own_limits.get(principal.id) if principal is not None and cls != AUTH else {}
        subject = f"user:{principal.id}" if principal is not None else f"ip:{address_key(ip)}"
        decision = await self.acquire(per_minute(self.budget(cls, principal, own)), cls, subject)
        if not decision.allowed:
            self.refused.labels(cls).inc()
        return decision

    async def acquire(self, item: RateLimitItem, *identifiers: str) -> RateLimitDecision:
        try:
            allowed = await self.windows.hit(item, *identifiers)
            stats = await self.windows.get_window_stats(item, *identifiers)
        except StorageError:
            # fail open: an outage of Redis must not take the API down (lockouts live in the database)
            logger.warning("rate limit storage unavailable; request let through", exc_info=True)
            return RateLimitDecision(True, item.amount, item.amount, 0)
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitDecision(allowed, item.amount, max(0, stats.remaining), reset_after)

    async def wait_needed(self, items: list[RateLimitItem], *identifiers: str) -> int | None:
        """Seconds until a request would fit every window of ``items``; None when it fits now."""
        try:
            for item in items:
                if not await self.windows.test(item, *identifiers):
                    stats = await self.windows.get_window_stats(item, *identifiers)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError:
            logger.warning("rate limit storage unavailable; not throttled", exc_info=True)
        return None

    async def count(self, items: list[RateLimitItem], *identifiers: str) -> None:
        try:
            for item in items:
                await self.windows.hit(item, *identifiers)
        except StorageError:
            logger.warning("rate limit storage unavailable; not counted", exc_info=True)

    async def identify(self, connection: HTTPConnection, ip: str | None) -> AuthUser | None:
        """The caller if their credentials check out (and their allow-list admits ``ip``), else None.

        Never raises: the route's own authentication answers bad credentials.
        """
        identity = self.runtime.services.get("identity")
        authorization = connection.headers.get("authorization", "")
        api_key = connection.headers.get("x-api-key")
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() == "bearer" and token.strip() and api_key is None:
                principal = await identity.authenticate_bearer(token.strip())
            elif api_key and not authorization:
                principal = await identity.authenticate_api_key(api_key, ip=ip)
            else:
                return None
        except TradePilotError:
            return None
        return principal if ip_allowed(principal.ip_allowlist, ip) else None


def _storage_for(runtime: Runtime) -> Storage:
    settings = runtime.settings
    if not settings.redis_url or runtime.redis is None:
        return MemoryStorage()
    url = settings.redis_url
    uri = "async+redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else "async+" + url
    # the runtime's connection pool: one set of connections, closed with the runtime
    return RedisStorage(uri, implementation="redispy", key_prefix=runtime.key("ratelimit"),
                        connection_pool=runtime.redis.connection_pool, wrap_exceptions=True)


def ip_failure_limits(runtime: Runtime) -> list[RateLimitItem]:
    return list(parse_many(runtime.settings.login_ip_failure_limits))


async def install_rate_limiter(runtime: Runtime) -> RateLimiter:
    limiter = RateLimiter(runtime)
    runtime.services["rate_limiter"] = limiter
    await runtime.bus.subscribe("identity.*", limiter.own_limits.on_event)
    return limiter


async def enforce_rate_limit(connection: HTTPConnection) -> None:
    """App-wide dependency: count the request against the caller's window; 429 when it is full."""
    if connection.scope["type"] != "http":
        return
    runtime: Runtime = connection.app.state.runtime
    limiter: RateLimiter | None = runtime.services.get("rate_limiter")
    cls = endpoint_class(connection.scope.get("route"))
    if limiter is None or cls == EXEMPT or not runtime.settings.rate_limit_enabled:
        return
    ip = get_client_ip(connection)  # type: ignore[arg-type]  # reads only the scope
    principal = await limiter.identify(connection, ip)
    decision = await limiter.check(cls=cls, principal=principal, ip=ip)
    connection.scope.setdefault("state", {})[STATE_KEY] = decision
    if not decision.allowed:
        raise RateLimited(f"Rate limit of {decision.limit} requests per minute reached; retry in "
                          f"{decision.retry_after} s.", headers={"Retry-After": str(decision.retry_after)})


class RateLimitHeadersMiddleware:
    """Adds ``X-RateLimit-*`` to every response whose request was counted, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            decision = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(decision, RateLimitDecision):
                extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
