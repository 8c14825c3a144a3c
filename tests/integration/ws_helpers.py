"""Helpers for WebSocket tests: a real uvicorn server in the test's loop, and a JSON client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PASSWORD = "streams of ticks 123"


def client_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it (RFC 6455 §5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def stalled_client(address: str, *messages: dict[str, Any]) -> socket.socket:
    """A client that opens /api/ws, sends ``messages`` and then never reads again.

    Its receive buffer is tiny (no autotuning), so the server's sends block after a few
    megabytes. (The ``websockets`` client keeps reading into its own buffers.)
    """
    loop = asyncio.get_running_loop()
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, f"GET /api/ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13"
                            "\r\n\r\n".encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5)  # byte by byte: leave the frames unread
        assert chunk, "handshake failed"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    for message in messages:
        await loop.sock_sendall(sock, client_frame(json.dumps(message)))
    return sock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def uvicorn_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (whose lifespan the caller runs) on a free port; yields ``host:port``."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="off", log_config=None,
                            ws_ping_interval=None)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, timeout=10)


async def register(client: httpx.AsyncClient, email: str | None = None) -> tuple[str, str]:
    """A new user; returns (access token, user id)."""
    email = email or f"ws-{uuid.uuid4().hex[:10]}@example.com"
    resp = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return await login(client, email), resp.json()["id"]


async def login(client: httpx.AsyncClient, email: str) -> str:
    resp = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


class WSClient:
    """A JSON WebSocket client that keeps every message it read."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        await self.conn.send(json.dumps(message))

    async def recv(self, timeout: float = 20.0) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.conn.recv(), timeout))
        self.seen.append(message)
        return message  # type: ignore[no-any-return]

    async def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Read until a message matches (skipping pings and others)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching message; last seen: {self.seen[-5:]}"
            message = await self.recv(remaining)
            if predicate(message):
                return message

    async def expect_type(self, type_: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        return await self.expect(lambda m: m.get("type") == type_
                                 and all(m.get(k) == v for k, v in fields.items()), timeout)

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str | None]:
        """Read until the server closes; returns (code, reason)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(ConnectionClosed):
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"socket still open; last seen: {self.seen[-5:]}"
                await self.recv(remaining)
        close = self.conn.protocol.close_rcvd
        return (close.code, close.reason) if close is not None else (None, None)

    async def authenticate(self, *, token: str | None = None, api_key: str | None = None) -> dict[str, Any]:
        await self.expect_type("welcome")
        await self.send(type="auth", **({"token": token} if token else {"api_key": api_key}))
        return await self.expect(lambda m: m["type"] in ("authenticated", "error"))

    async def subscribe(self, *channels: str, **extra: Any) -> None:
        await self.send(type="subscribe", channels=list(channels), **extra)


@contextlib.asynccontextmanager
async def ws_client(address: str, *, path: str = "/api/ws", **options: Any) -> AsyncIterator[WSClient]:
    async with connect(f"ws://{address}{path}", open_timeout=30, close_timeout=1, **options) as conn:
        yield WSClient(conn)


async def authed(address: str, token: str, stack: contextlib.AsyncExitStack, **options: Any) -> WSClient:
    ws = await stack.enter_async_context(ws_client(address, **options))
    reply = await ws.authenticate(token=token)
    assert reply["type"] == "authenticated", reply
    return ws
