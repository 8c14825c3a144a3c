"""A slow or stalled client never delays the feed or the other clients, and is cut off with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.ws_helpers import authed, register, stalled_client, uvicorn_server
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.core.events import Event, Topics
from tradepilot.runtime import Runtime
from tradepilot.streaming.hub import StreamHub

CLOSE_FRAME = b"\x88\x0f" + (4008).to_bytes(2, "big") + b"slow_consumer"  # close 4008, reason
PAD = "x" * 16_000  # 400 of them: beyond the 4 MB a server socket buffers


@pytest.fixture
def db_backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", stream_send_timeout_seconds=0.5,
                         stream_queue_size=20)


@pytest.fixture
async def address(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with uvicorn_server(app) as addr:
        yield addr


def hub_of(runtime: Runtime) -> StreamHub:
    return runtime.services["streaming_hub"]  # type: ignore[no-any-return]


def disconnects(runtime: Runtime, reason: str) -> float:
    value = hub_of(runtime).metrics.disconnects.labels(reason)._value.get()
    return float(value)


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_stalled_client_does_not_delay_others_and_is_dropped(address: str, client: httpx.AsyncClient,
                                                                   runtime: Runtime) -> None:
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        stalled = await stalled_client(address, {"type": "auth", "token": token},
                                 {"type": "subscribe", "channels": ["ticker:BTC/USDT"]})
        stack.callback(stalled.close)
        await wait_until(lambda: any(c.channels for c in hub_of(runtime).clients))
        readers = [await authed(address, token, stack) for _ in range(3)]
        for ws in readers:
            await ws.subscribe("ticker:BTC/USDT")
            await ws.expect_type("subscribed")
        latencies: list[float] = []

        async def read(ws) -> int:  # type: ignore[no-untyped-def]
            while True:
                message = json.loads(await ws.conn.recv())
                if message["type"] == "ticker":
                    latencies.append(time.time() - message["data"]["sent"])
                    if message["data"]["n"] == 399:
                        return len(latencies)

        tasks = [asyncio.create_task(read(ws)) for ws in readers]
        for n in range(400):  # far more than the stalled socket buffers
            await runtime.bus.publish(Event(topic=Topics.market("ticker", "BTC-USDT"), type="ticker.updated",
                                            payload={"n": n, "sent": time.time(), "pad": PAD}))
            await asyncio.sleep(0.002)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < 2.0, f"readers were delayed: p99 {p99:.3f}s"  # generous: all runs in one loop here
        await wait_until(lambda: disconnects(runtime, "slow_consumer") >= 1, timeout=5)
        await wait_until(lambda: len(hub_of(runtime).clients) == 3, timeout=5)  # dropped after the goodbye timeout


async def test_overflowing_trades_disconnect_with_slow_consumer(address: str, client: httpx.AsyncClient,
                                                                runtime: Runtime) -> None:
    token, _ = await register(client)
    slow = await stalled_client(address, {"type": "auth", "token": token},
                          {"type": "subscribe", "channels": ["trades:BTC/USDT"]})
    try:
        await wait_until(lambda: any(c.channels for c in hub_of(runtime).clients))
        for n in range(600):  # the writer blocks, then the 20-message queue fills
            await runtime.bus.publish(Event(topic=Topics.market("trade", "BTC-USDT"), type="trade.executed",
                                            payload={"id": str(n), "pad": PAD}))
            if n % 50 == 0:
                await asyncio.sleep(0)
        await wait_until(lambda: disconnects(runtime, "slow_consumer") >= 1, timeout=5)
        # the client wakes up in time to drain its buffers: after its data come the reason and the close
        received = bytearray()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.get_running_loop().sock_recv(slow, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
            if CLOSE_FRAME in received:
                break
        assert b'"code":"slow_consumer"' in received
        assert CLOSE_FRAME in received
        assert not hub_of(runtime).clients
    finally:
        slow.close()


async def test_ticks_are_written_to_reading_clients_directly(address: str, client: httpx.AsyncClient,
                                                             runtime: Runtime) -> None:
    """On uvicorn's websockets-sansio implementation the hub writes frames to a writable socket
    itself (no writer task), framed per connection with permessage-deflate, shared without."""
    token, _ = await register(client)
    async with contextlib.AsyncExitStack() as stack:
        deflate = await authed(address, token, stack)  # the websockets client offers permessage-deflate
        plain = await authed(address, token, stack, compression=None)
        for ws in (deflate, plain):
            await ws.subscribe("ticker:BTC/USDT")
            await ws.expect_type("subscribed")
        clients = hub_of(runtime).clients
        assert len(clients) == 2 and all(c.transport.can_send_now() for c in clients)  # type: ignore[attr-defined]
        negotiated = sorted(bool(c.transport._fast.conn.extensions) for c in clients)  # type: ignore[attr-defined]
        assert negotiated == [False, True]  # both paths of send_now are exercised
        for n in range(50):
            await runtime.bus.publish(Event(topic=Topics.market("ticker", "BTC-USDT"), type="ticker.updated",
                                            payload={"n": n, "pad": "y" * 200}))
            await asyncio.sleep(0.001)
        for ws in (deflate, plain):
            last = await ws.expect(lambda m: m.get("type") == "ticker" and m["data"]["n"] == 49)
            assert last["channel"] == "ticker:BTC/USDT" and last["data"]["pad"] == "y" * 200
        assert all(c._send_now is not None and not c.queue for c in clients)  # the fast path stayed on
