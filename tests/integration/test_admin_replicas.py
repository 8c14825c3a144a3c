"""Suspension on one replica is honoured by another at once (Redis bus), not after the cache TTL."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.helpers import bearer, new_user
from tests.integration.admin_support import client_from, create_key, make_admin
from tests.support import make_settings
from tradepilot.app import create_app


async def test_suspension_reaches_the_other_replica_at_once(database_url, redis_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prefix = f"tptest:suspend:{time.time_ns()}:"
    # a long cache: only the bus can explain a prompt refusal on the other replica
    settings = make_settings(database_url, redis_url=redis_url, redis_prefix=prefix, session_cache_seconds=30,
                             data_dir=tmp_path / "var")
    a, b = create_app(settings), create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(a.router.lifespan_context(a))
        await stack.enter_async_context(b.router.lifespan_context(b))
        on_a = await stack.enter_async_context(client_from(a, "203.0.113.10"))
        on_b = await stack.enter_async_context(client_from(b, "203.0.113.11"))
        _, admin = await make_admin(on_a, a.state.runtime)
        user, tokens = await new_user(on_a)
        key = await create_key(on_a, tokens, ["read"])
        for headers in (bearer(tokens), {"X-API-Key": key["key"]}):
            assert (await on_b.get("/api/users/me", headers=headers)).status_code == 200  # b caches them
        resp = await on_a.post(f"/api/admin/users/{user['id']}/suspend", json={"reason": "fraud"},
                               headers=bearer(admin))
        assert resp.status_code == 200, resp.text
        for headers in (bearer(tokens), {"X-API-Key": key["key"]}):
            deadline = time.monotonic() + 2.0
            while (await on_b.get("/api/users/me", headers=headers)).status_code != 401:
                assert time.monotonic() < deadline, "replica b still accepts a suspended user's credential"
                await asyncio.sleep(0.02)
