"""`make run`'s steps, then a WebSocket client logs in as the demo user and receives ticks."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.servers import make_run

pytestmark = pytest.mark.slow


async def _ticks(url: str, token: str, count: int) -> list[dict]:
    ticks: list[dict] = []
    async with connect(url.replace("http://", "ws://") + "/api/ws", open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.send(json.dumps({"type": "subscribe", "channels": ["ticker:BTC/USDT", "orderbook:BTC/USDT"]}))
        deadline = time.monotonic() + 30
        while len(ticks) < count:
            message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            assert message["type"] != "error", message
            if message["type"] == "ticker":
                ticks.append(message)
    return ticks


def test_make_run_server_streams_ticks_to_a_websocket_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path, market_backfill_days="1")
    try:
        server.wait_ready(timeout=90)
        token = httpx.post(server.url + "/api/auth/login", json={"email": demo.email, "password": demo.password}).json()
        ticks = asyncio.run(_ticks(server.url, token["access_token"], 3))
        assert all(t["channel"] == "ticker:BTC/USDT" for t in ticks)
        assert len({t["data"]["last"] for t in ticks} | {None}) >= 2  # prices as exact strings, moving
        assert [t["seq"] for t in ticks] == sorted(t["seq"] for t in ticks)
    finally:
        server.stop()
