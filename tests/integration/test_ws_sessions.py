"""Sockets whose session ends are closed with a reason; expired tokens re-authenticate in-band."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import update

from tests.integration.ws_helpers import authed, login, register, uvicorn_server
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.identity.models import User
from tradepilot.runtime import Runtime


@pytest.fixture
def db_backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", session_cache_seconds=30,
                         stream_reauth_grace_seconds=20)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def address(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with uvicorn_server(app) as addr:
        yield addr


async def test_logout_closes_the_socket_within_seconds(address: str, client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("ticker:BTC/USDT")
        await ws.expect_type("subscribed")
        started = time.monotonic()
        assert (await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})).status_code == 204
        error = await ws.expect_type("error", timeout=3)
        assert error["code"] == "session_ended"
        assert await ws.closed(timeout=3) == (4001, "session_ended")
        assert time.monotonic() - started < 3


async def test_suspension_closes_every_socket_of_the_user(address: str, client: httpx.AsyncClient,
                                                          runtime: Runtime) -> None:
    token, user_id = await register(client)
    other, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        first, second, bystander = (await authed(address, token, stack), await authed(address, token, stack),
                                    await authed(address, other, stack))
        async with runtime.db.transaction() as session:
            await session.execute(update(User).where(User.id == uuid.UUID(user_id))
                                  .values(suspended_at=runtime.clock.now()))
        await runtime.services["identity"].announce_user_changed(uuid.UUID(user_id))
        for ws in (first, second):
            assert await ws.closed(timeout=3) == (4001, "session_ended")
        await bystander.send(type="ping")
        await bystander.expect_type("pong")


async def test_expired_token_must_reauthenticate_in_band(address: str, client: httpx.AsyncClient,
                                                        runtime: Runtime, clock: TestClock) -> None:
    email = f"expiry-{uuid.uuid4().hex[:8]}@example.com"
    token, _ = await register(client, email)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        clock.advance(runtime.settings.access_token_ttl_seconds + 1)
        notice = await ws.expect_type("error", timeout=3)
        assert notice["code"] == "token_expired" and notice["grace_seconds"] == 20
        await ws.send(type="auth", token=await login(client, email), id="again")
        renewed = await ws.expect_type("authenticated", timeout=3)
        assert renewed["id"] == "again"
        clock.advance(25)  # past the first token's grace: the new token keeps the socket open
        await ws.send(type="ping")
        await ws.expect_type("pong")
        clock.advance(runtime.settings.access_token_ttl_seconds + 21)  # the new one expired, no re-auth
        await ws.expect(lambda m: m.get("code") == "token_expired", timeout=3)
        assert await ws.closed(timeout=3) == (4001, "token_expired")


async def test_reauth_as_another_user_is_refused(address: str, client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    other, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.send(type="auth", token=other)
        assert (await ws.expect_type("error"))["code"] == "forbidden"
        assert await ws.closed() == (4003, "forbidden")
