"""Who a request is counted against, and in which endpoint class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tradepilot.identity.ratelimit import (
    AUTH,
    DEFAULT,
    EXEMPT,
    TRADE,
    RateLimitDecision,
    address_key,
    endpoint_class,
    limit_class,
)


@pytest.mark.parametrize(("ip", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same subscriber's other address
    ("::ffff:203.0.113.7", "203.0.113.7"),
    (None, "unknown"),
    ("not an address", "unknown"),
])
def test_address_key(ip: str | None, key: str) -> None:
    assert address_key(ip) == key


def route(path: str, extra: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(path=path, openapi_extra=extra)


def test_endpoint_classes() -> None:
    assert endpoint_class(route("/api/auth/login")) == AUTH
    assert endpoint_class(route("/api/auth/register")) == AUTH
    assert endpoint_class(route("/api/auth/reset-password/confirm")) == AUTH
    assert endpoint_class(route("/api/auth/2fa/confirm")) == AUTH
    assert endpoint_class(route("/api/auth/refresh")) == DEFAULT
    assert endpoint_class(route("/api/users/me")) == DEFAULT
    assert endpoint_class(route("/health")) == EXEMPT
    assert endpoint_class(None) == DEFAULT
    assert endpoint_class(route("/api/trading/orders", limit_class(TRADE))) == TRADE
    with pytest.raises(ValueError):
        limit_class("fast")


def test_decision_headers_and_retry_after() -> None:
    refused = RateLimitDecision(allowed=False, limit=10, remaining=0, reset_after=0)
    assert refused.retry_after == 1  # never "retry in 0 s"
    assert refused.headers() == {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"}
