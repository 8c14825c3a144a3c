"""Two server processes sharing PostgreSQL and Redis: a WebSocket client on replica A gets a
user event emitted on replica B (through B's outbox) and a market event published on B."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.servers import Server, server_env, tradepilot
from tests.support import worker_id

pytestmark = pytest.mark.slow

# Runs in a separate process with replica B's settings (another replica as far as the bus and
# the database can tell): emits through the outbox, publishes the event and a ticker on the bus.
EMIT_ON_B = """
import asyncio, sys, uuid
from tradepilot.config import load_settings
from tradepilot.core.events import Event, Topics
from tradepilot.core.outbox import emit
from tradepilot.runtime import build_runtime

async def main(user_id):
    runtime = build_runtime(load_settings())
    await runtime.bus.start()
    try:
        async with runtime.db.transaction() as session:
            event = await emit(session, topic=Topics.user(user_id, "orders"), type="order.created",
                               payload={"client_order_id": "from-b", "price": "100.25"}, user_id=user_id)
        # publish it from this process too, as the relay does (whichever replica holds its lease
        # publishes it again: the client must see it once)
        await runtime.bus.publish(event)
        await runtime.bus.publish(Event(topic=Topics.market("ticker", "BTC-USDT"), type="ticker.updated",
                                        payload={"symbol": "BTC/USDT", "last": "123.45"}))
    finally:
        await runtime.bus.stop()
        await runtime.redis.aclose()
        await runtime.db.dispose()

asyncio.run(main(sys.argv[1]))
"""


async def _client_on_a(url: str, token: str, emit_on_b) -> list[dict]:  # type: ignore[no-untyped-def]
    seen: list[dict] = []
    async with connect(url.replace("http://", "ws://") + "/api/ws", open_timeout=5) as ws:

        async def expect(type_: str, timeout: float = 60.0, **data: str) -> dict:
            deadline = time.monotonic() + timeout
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                seen.append(message)
                if message["type"] == type_ and all(message["data"].get(k) == v for k, v in data.items()):
                    return message

        await ws.send(json.dumps({"type": "auth", "token": token}))
        await expect("authenticated")
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account", "ticker:BTC/USDT"]}))
        await expect("subscribed")
        await expect("subscribed")
        await asyncio.to_thread(emit_on_b)
        await expect("ticker", last="123.45")  # the simulated feed's tickers have other prices
        await expect("event")
        await ws.send(json.dumps({"type": "ping"}))
        await expect("pong", timeout=10)
    return seen


@pytest.mark.timeout(400)
def test_client_on_replica_a_receives_events_from_replica_b(tmp_path, postgres_database, redis_url) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(postgres_database.truncate())
    env = server_env(database_url=postgres_database.url, redis_url=redis_url,
                     redis_prefix=f"tpe2e:{worker_id()}:{time.time_ns()}:", market_backfill_days="1")
    tradepilot(["migrate"], env, tmp_path)
    a, b = Server(env, tmp_path), Server(env, tmp_path)
    try:
        a.wait_ready(timeout=120)
        b.wait_ready(timeout=120)
        email, password = f"ws-replica-{uuid.uuid4().hex[:8]}@example.com", "replicas stream together"
        registered = httpx.post(b.url + "/api/auth/register", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text
        token = httpx.post(b.url + "/api/auth/login", json={"email": email, "password": password}).json()
        user_id = registered.json()["id"]

        def emit_on_b() -> None:
            out = subprocess.run([sys.executable, "-c", EMIT_ON_B, user_id], env={**env, "TRADEPILOT_PORT": str(b.port)},
                                 cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr

        seen = asyncio.run(_client_on_a(a.url, token["access_token"], emit_on_b))
        events = [m for m in seen if m["type"] == "event"]
        assert len(events) == 1  # published twice (by "B" and by the relay), delivered once
        assert events[0]["seq"] == 1 and events[0]["data"]["payload"]["client_order_id"] == "from-b"
        # a logout on B closes the socket on A
        closed = asyncio.run(_closed_after_logout(a.url, b.url, token["access_token"]))
        assert closed == (4001, "session_ended")
    finally:
        a.stop()
        b.stop()


async def _closed_after_logout(a_url: str, b_url: str, token: str) -> tuple[int, str]:
    async with connect(a_url.replace("http://", "ws://") + "/api/ws", open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "authenticated":
            pass
        async with httpx.AsyncClient() as http:
            resp = await http.post(b_url + "/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 204
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except Exception:
            pass
        close = ws.protocol.close_rcvd
        assert close is not None, "socket not closed after logout on the other replica"
        return close.code, close.reason
