"""Two API replicas on PostgreSQL + Redis: a logout on one is honoured by the other at once."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.servers import Server, server_env, tradepilot
from tests.support import worker_id

pytestmark = pytest.mark.slow


def test_logout_on_one_replica_revokes_on_the_other(tmp_path, postgres_database, redis_url) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    asyncio.run(postgres_database.truncate())
    env = server_env(database_url=postgres_database.url, redis_url=redis_url,
                     redis_prefix=f"tpe2e:{worker_id()}:{time.time_ns()}:",
                     session_cache_seconds="30")  # long: only the bus can explain a prompt revocation
    tradepilot(["migrate"], env, tmp_path)
    a, b = Server(env, tmp_path), Server(env, tmp_path)
    try:
        a.wait_ready()
        b.wait_ready()
        email, password = f"replica-{time.time_ns()}@example.com", "replicas share one truth"
        assert httpx.post(a.url + "/api/auth/register", json={"email": email, "password": password}).status_code == 201
        tokens = httpx.post(b.url + "/api/auth/login", json={"email": email, "password": password}).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert httpx.get(b.url + "/api/users/me", headers=auth).status_code == 200  # b caches the session
        assert httpx.post(a.url + "/api/auth/logout", headers=auth).status_code == 204
        deadline = time.monotonic() + 2.0
        while httpx.get(b.url + "/api/users/me", headers=auth).status_code != 401:
            assert time.monotonic() < deadline, "replica b still accepts a logged-out token"
            time.sleep(0.02)
        health = httpx.get(b.url + "/api/system/health").json()
        assert health["components"] == {"database": "up", "redis": "up"}
    finally:
        a.stop()
        b.stop()
