"""``/api/ws``: the WebSocket endpoint. Credentials come in the first message, never the URL."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from tradepilot.streaming.connection import Conversation, welcome
from tradepilot.streaming.hub import StreamHub
from tradepilot.streaming.protocol import ErrorCode
from tradepilot.streaming.setup import HUB_KEY

logger = logging.getLogger("tradepilot.streaming")

router = APIRouter(tags=["streaming"])


class SocketTransport:
    """A client's socket as the hub sees it: send, close, and drop."""

    __slots__ = ("_send", "_ws")

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._send = websocket.send

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection of a peer that stopped reading (a close frame cannot reach it).

        ASGI has no "abort"; uvicorn's protocol object is reachable through ``receive``,
        which the middleware stack passes through unwrapped. If it is not, the connection
        is left to uvicorn's ping timeout.
        """
        protocol = getattr(getattr(self._ws, "_receive", None), "__self__", None)
        transport = getattr(protocol, "transport", None)
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
