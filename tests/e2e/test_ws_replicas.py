"""Two server processes sharing PostgreSQL and Redis: a WebSocket client on replica A gets a
user event emitted on replica B (through B's outbox) and the market data of the feed, which only
B runs (A is started with ``TRADEPILOT_MARKET_FEED_OWNER=false``).

The client never relies on the order of messages from different sources (an account event and a
ticker travel independently): it reads until everything it waits for has arrived.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from tests.e2e.servers import Server, server_env, tradepilot
from tests.support import worker_id
from tradepilot.core.outbox_models import OutboxEvent

pytestmark = pytest.mark.slow

# Runs in a separate process with replica B's settings (another replica as far as the bus and
# the database can tell): emits through the outbox and publishes the event on the bus.
EMIT_ON_B = """
import asyncio, sys, uuid
from tradepilot.config import load_settings
from tradepilot.core.events import Topics
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
    finally:
        await runtime.bus.stop()
        await runtime.redis.aclose()
        await runtime.db.dispose()

asyncio.run(main(sys.argv[1]))
"""


async def _published_at(database_url: str, event_id: str, timeout: float = 30.0) -> datetime:
    """When the outbox relay (on whichever replica holds its lease) marked the event published:
    it publishes first, then marks."""
    engine = create_async_engine(database_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                async with engine.connect() as conn:
                    published = await conn.scalar(select(OutboxEvent.published_at).where(OutboxEvent.id == event_id))
                if published is not None:
                    return published
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def _client_on_a(url: str, token: str, emit_on_b: Callable[[], None], database_url: str) -> list[dict]:
    seen: list[dict] = []

    def received(type_: str) -> list[dict]:
        return [m for m in seen if m["type"] == type_]

    async with connect(url.replace("http://", "ws://") + "/api/ws", open_timeout=5) as ws:

        async def until(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
            """Read messages, whatever their order, until ``done()``."""
            try:
                async with asyncio.timeout(timeout):
                    while not done():
                        message = json.loads(await ws.recv())
                        assert message["type"] != "error", message
                        seen.append(message)
            except TimeoutError:
                raise AssertionError(f"no {what} within {timeout} s; got {[m['type'] for m in seen]}") from None

        await ws.send(json.dumps({"type": "auth", "token": token}))
        await until(lambda: bool(received("authenticated")), "authentication")
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account", "ticker:BTC/USDT"]}))
        # a ticker on A, which runs no feed, came from B's feed over the bus
        await until(lambda: len(received("subscribed")) == 2 and bool(received("ticker")), "subscriptions and a ticker")
        await asyncio.to_thread(emit_on_b)
        emitted = datetime.now(timezone.utc)  # B's own publication of the event is done
        await until(lambda: bool(received("event")), "account event")
        # The relay publishes the event a second time. Wait until it has, then for a ticker B's feed
        # published after that: the bus delivers in publication order, so a second copy would be here.
        barrier = max(emitted, await _published_at(database_url, received("event")[0]["data"]["id"]))
        await until(lambda: any(datetime.fromisoformat(m["data"]["ts"]) > barrier for m in received("ticker")),
                    "ticker published after both copies of the event")
        await ws.send(json.dumps({"type": "ping"}))
        await until(lambda: bool(received("pong")), "pong", timeout=10)
    return seen


@pytest.mark.timeout(400)
def test_client_on_replica_a_receives_events_from_replica_b(tmp_path, postgres_database, redis_url) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(postgres_database.truncate())
    env = server_env(database_url=postgres_database.url, redis_url=redis_url,
                     redis_prefix=f"tpe2e:{worker_id()}:{time.time_ns()}:", market_backfill_days="1")
    tradepilot(["migrate"], env, tmp_path)
    # A only consumes the market: everything market it streams was published by B's feed
    a, b = Server({**env, "TRADEPILOT_MARKET_FEED_OWNER": "false"}, tmp_path), Server(env, tmp_path)
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

        seen = asyncio.run(_client_on_a(a.url, token["access_token"], emit_on_b, postgres_database.url))
        events = [m for m in seen if m["type"] == "event"]
        assert len(events) == 1  # published twice (by "B" and by the relay), delivered once
        tickers = [m for m in seen if m["type"] == "ticker"]
        assert all(t["data"]["venue"] == "simulated" and t["data"]["symbol"] == "BTC/USDT" for t in tickers)
        assert [t["seq"] for t in tickers] == sorted(t["seq"] for t in tickers)
        [subscribed] = [m for m in seen if m["type"] == "subscribed" and m.get("channel") == "account"]
        # registration's own events (the default trading account) came before: count from there
        assert events[0]["seq"] == subscribed["seq"] + 1
        assert events[0]["data"]["payload"]["client_order_id"] == "from-b"
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
