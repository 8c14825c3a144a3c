"""Signal events reach the owner's WebSocket clients on the ``account`` channel (the outbox
relays ``user.<id>.signals``), as for orders and alerts. The real clock: the WebSocket hub's
timers run on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.signals_support import SIGNALS, create
from tests.integration.ws_helpers import authed, register, uvicorn_server


@pytest.fixture
async def address(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with uvicorn_server(app) as addr:
        yield addr


async def test_websocket_clients_see_created_and_cancelled_signals(address: str, client: httpx.AsyncClient) -> None:
    token, _ = await register(client)
    auth = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("account")
        await ws.expect_type("subscribed", channel="account")
        made = await create(client, auth, side="sell", strength=0.5, reason="ws")
        created = await ws.expect_type("event", channel="account")
        assert (created["data"]["kind"], created["data"]["type"]) == ("signals", "signal.created")
        assert created["data"]["payload"]["signal"]["id"] == made["id"]
        await client.put(f"{SIGNALS}/{made['id']}/status", json={"status": "cancelled"}, headers=auth)
        changed = await ws.expect_type("event", channel="account")
        assert changed["data"]["type"] == "signal.status_changed"
        assert changed["data"]["payload"]["signal"]["status"] == "cancelled"
