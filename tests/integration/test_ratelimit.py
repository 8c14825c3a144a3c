"""Request rate limits: 429 with Retry-After and X-RateLimit-* headers, keys per user or per
trusted client IP, endpoint classes, and a Redis-backed window shared by two apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tests import support
from tests.helpers import bearer, login, new_user, register
from tradepilot.app import create_app
from tradepilot.config import Settings

ME = "/api/users/me"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[object]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_at(app: object, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 41000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def limit_headers(resp: httpx.Response) -> tuple[int, int, int]:
    return (int(resp.headers["x-ratelimit-limit"]), int(resp.headers["x-ratelimit-remaining"]),
            int(resp.headers["x-ratelimit-reset"]))


def assert_rate_limited(resp: httpx.Response, limit: int) -> None:
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == "rate_limited" and body["status"] == 429 and body["request_id"]
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    assert limit_headers(resp)[:2] == (limit, 0)


async def test_a_users_own_tiny_limit_answers_429_with_retry_after(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    first = await client.get(ME, headers=bearer(tokens))
    assert first.status_code == 200 and limit_headers(first)[:2] == (120, 119)  # the free plan's budget
    changed = await client.put("/api/users/me/settings", headers=bearer(tokens),
                               json={"limits": {"requests_per_minute": 3}})
    assert changed.status_code == 200, changed.text
    seen = []
    for _ in range(3):
        resp = await client.get(ME, headers=bearer(tokens))
        assert resp.status_code == 200
        seen.append(limit_headers(resp))
    assert [(limit, remaining) for limit, remaining, _ in seen] == [(3, 2), (3, 1), (3, 0)]
    assert all(0 < reset <= 60 for _, _, reset in seen)
    assert_rate_limited(await client.get(ME, headers=bearer(tokens)), 3)
    # anonymous callers from the same address are counted apart: not a 429 for them
    anonymous = await client.get(ME)
    assert anonymous.status_code == 401 and limit_headers(anonymous)[0] == 60


async def test_bad_credentials_cannot_spend_a_users_budget(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_anonymous_per_minute=3)
    async with running(settings) as app, client_at(app, "203.0.113.9") as c:
        _, tokens = await new_user(c)
        header_and_claims = tokens["access_token"].rsplit(".", 1)[0]  # the user's id, a forged signature
        forged = {"Authorization": f"Bearer {header_and_claims}.{'A' * 43}"}
        for _ in range(3):
            assert (await c.get(ME, headers=forged)).status_code == 401
        assert_rate_limited(await c.get(ME, headers=forged), 3)  # the forger's address is limited...
        own = await c.get(ME, headers=bearer(tokens))
        assert own.status_code == 200 and limit_headers(own)[:2] == (120, 119)  # ...not the user


async def test_anonymous_limits_ignore_x_forwarded_for_from_an_untrusted_peer(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_anonymous_per_minute=2)
    async with running(settings) as app, client_at(app, "203.0.113.50") as c, client_at(app, "203.0.113.51") as other:
        for n in range(2):  # a new forged address each time: still one client
            resp = await c.get(ME, headers={"X-Forwarded-For": f"192.0.2.{n}"})
            assert resp.status_code == 401 and limit_headers(resp)[:2] == (2, 1 - n)
        assert_rate_limited(await c.get(ME, headers={"X-Forwarded-For": "192.0.2.99"}), 2)
        assert (await other.get(ME)).status_code == 401  # another peer has its own window


async def test_anonymous_limits_follow_x_forwarded_for_behind_a_trusted_proxy(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_anonymous_per_minute=2,
                                     trusted_proxies="10.0.0.0/8")
    async with running(settings) as app, client_at(app, "10.0.0.5") as proxy:
        alice = {"X-Forwarded-For": "198.51.100.1"}
        bob = {"X-Forwarded-For": "198.51.100.2, 10.0.0.7"}  # through two of our proxies
        for _ in range(2):
            assert (await proxy.get(ME, headers=alice)).status_code == 401
        assert_rate_limited(await proxy.get(ME, headers=alice), 2)
        resp = await proxy.get(ME, headers=bob)
        assert resp.status_code == 401 and limit_headers(resp)[:2] == (2, 1)


async def test_the_auth_class_is_strict_and_separate(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_auth_per_minute=2)
    async with running(settings) as app, client_at(app, "203.0.113.60") as c:
        profile = await register(c)
        tokens = await login(c, profile["email"])
        assert_rate_limited(await c.post("/api/auth/login", json={"email": profile["email"], "password": "x" * 12}),
                            2)
        assert_rate_limited(await c.post("/api/auth/reset-password", json={"email": profile["email"]}), 2)
        me = await c.get(ME, headers=bearer(tokens))  # the default class has its own window
        assert me.status_code == 200 and limit_headers(me)[:2] == (120, 119)


async def test_liveness_is_never_limited(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_anonymous_per_minute=1)
    async with running(settings) as app, client_at(app, "203.0.113.70") as c:
        for _ in range(5):
            resp = await c.get("/health")
            assert resp.status_code == 200 and "x-ratelimit-limit" not in resp.headers


async def test_rate_limiting_can_be_switched_off(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_anonymous_per_minute=1,
                                     rate_limit_enabled=False)
    async with running(settings) as app, client_at(app, "203.0.113.71") as c:
        for _ in range(3):
            resp = await c.get(ME)
            assert resp.status_code == 401 and "x-ratelimit-limit" not in resp.headers


@pytest.mark.redis
async def test_replicas_share_one_window_through_redis(database_url: str, redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", redis_url=redis_url,
                                     rate_limit_anonymous_per_minute=3)
    async with running(settings) as one, running(settings) as two, \
            client_at(one, "203.0.113.80") as a, client_at(two, "203.0.113.80") as b:
        assert limit_headers(await a.get(ME))[:2] == (3, 2)
        assert limit_headers(await b.get(ME))[:2] == (3, 1)
        assert limit_headers(await a.get(ME))[:2] == (3, 0)
        assert_rate_limited(await b.get(ME), 3)
        assert_rate_limited(await a.get(ME), 3)
    # another deployment (prefix) on the same Redis counts on its own
    fresh = support.make_settings(database_url, data_dir=tmp_path / "var2", redis_url=redis_url,
                                  rate_limit_anonymous_per_minute=3)
    async with running(fresh) as three, client_at(three, "203.0.113.80") as c:
        assert limit_headers(await c.get(ME))[:2] == (3, 2)
