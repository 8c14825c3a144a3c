"""``/api/ws``: the WebSocket endpoint. Credentials come in the first message, never the URL."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from tradepilot.streaming.connection import Conversation, welcome
from tradepilot.streaming.hub import StreamHub
from tradepilot.streaming.protocol import ErrorCode
from tradepilot.streaming.setup import HUB_KEY

logger = logging.getLogger("tradepilot.streaming")

router = APIRouter(tags=["streaming"])

try:  # uvicorn's default WebSocket implementation (``--ws auto`` with websockets installed)
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol as _SansIO,
    )
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
except ImportError:  # pragma: no cover - another server or an old uvicorn: ASGI sends only
    _SansIO = None

_last_frame: tuple[str, bytes] = ("", b"")  # the newest text and its WebSocket frame


def _text_frame(text: str) -> bytes:
    """``text`` as one unmasked, uncompressed text frame, built once per fan-out: the hub
    hands every subscriber the same string object, so the frame is shared by all of them."""
    global _last_frame
    last_text, frame = _last_frame
    if text is not last_text:
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        _last_frame = (text, frame)
    return frame


def _server_protocol(websocket: WebSocket) -> Any:
    """uvicorn's protocol object of this connection (the owner of ``receive``), or None."""
    return getattr(getattr(websocket, "_receive", None), "__self__", None)


def _fast_path_fits(protocol: Any) -> bool:
    """uvicorn's websockets-sansio protocol, with the parts ``send_now`` relies on."""
    if _SansIO is None or not isinstance(protocol, _SansIO):
        return False
    conn = getattr(protocol, "conn", None)
    needs = (("writable", "close_sent", "disconnected", "transport"),
             ("state", "extensions", "send_text", "data_to_send"))
    return all(hasattr(protocol, n) for n in needs[0]) and all(hasattr(conn, n) for n in needs[1])


class SocketTransport:
    """A client's socket as the hub sees it: send, close, and drop.

    ``send_text`` is the ASGI send (awaits flow control). On uvicorn's ``websockets-sansio``
    implementation there is also the synchronous fast path ``can_send_now`` / ``send_now``:
    once the transport is writable, uvicorn's own ``send`` only frames the text with the
    connection's ``websockets`` protocol object and writes it to the transport; ``send_now``
    does the same without a task switch and the ASGI layers (Starlette, the middleware
    wrappers) per frame, and, when the connection negotiated no extension (no
    permessage-deflate), writes a frame serialized once for all subscribers. The fan-out of
    one tick to a thousand clients is then one loop of socket writes, like a bare
    ``websockets.broadcast``. Any other server keeps the plain ASGI path.
    """

    __slots__ = ("_fast", "_send", "_ws")

    def __init__(self, websocket: WebSocket) -> None:  # after websocket.accept()
        self._ws = websocket
        self._send = websocket.send
        protocol = _server_protocol(websocket)
        self._fast = protocol if _fast_path_fits(protocol) else None

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    def can_send_now(self) -> bool:
        """The socket takes a frame at once: open and not paused by flow control."""
        p = self._fast
        return (p is not None and p.writable.is_set() and not p.close_sent and not p.disconnected
                and p.conn.state is State.OPEN)

    def send_now(self, text: str) -> bool:
        """Write one text frame at once if the socket takes it without waiting; else False
        (nothing written: the caller queues it for the writer task)."""
        p = self._fast
        if p is None or not p.writable.is_set() or p.close_sent or p.disconnected:
            return False
        conn = p.conn
        if conn.state is not State.OPEN:
            return False
        if conn.extensions:  # per-connection state (compression): let websockets frame it
            conn.send_text(text.encode())
            p.transport.write(b"".join(conn.data_to_send()))
        else:
            p.transport.write(_text_frame(text))
        return True

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection of a peer that stopped reading (a close frame cannot reach it).

        ASGI has no "abort"; uvicorn's protocol object is reachable through ``receive``,
        which the middleware stack passes through unwrapped. If it is not, the connection
        is left to uvicorn's ping timeout.
        """
        transport = getattr(_server_protocol(self._ws), "transport", None)
        if transport is not None:
            transport.abort()


@router.websocket("/api/ws")
async def stream(websocket: WebSocket) -> None:
    hub: StreamHub | None = websocket.app.state.runtime.services.get(HUB_KEY)
    if hub is None:
        await websocket.close(1013, "streaming is not running")
        return
    await websocket.accept()
    ip = websocket.scope.get("state", {}).get("client_ip")
    client = hub.attach(SocketTransport(websocket), ip)
    conversation = Conversation(hub, client)
    client.send(welcome(hub))
    try:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                break
            if client.closing is not None:
                continue  # saying goodbye: ignore the rest
            text = received.get("text")
            if text is None:
                try:
                    text = (received.get("bytes") or b"").decode("utf-8")
                except UnicodeDecodeError:
                    conversation.reply_error(ErrorCode.BAD_REQUEST, "Messages are UTF-8 JSON.")
                    continue
            try:
                await conversation.handle(text)
            except Exception:
                logger.exception("websocket message failed")
                conversation.reply_error(ErrorCode.INTERNAL_ERROR, "That message could not be handled; "
                                         "it has been logged.")
    except RuntimeError:  # receive after the socket was closed under us
        pass
    finally:
        hub.detach(client)
        await client.wait_closed()
