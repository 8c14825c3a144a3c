"""One WebSocket connection's conversation: auth first, then subscribe / unsubscribe / resync.

The reader handles one client message at a time; data flows meanwhile through the client's
writer task. Every refusal is an ``error`` message with a stable code; authentication and
authorisation failures then close the socket (close code 4001 or 4003).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tradepilot.core.errors import Unauthorized
from tradepilot.identity.service import ip_allowed
from tradepilot.streaming.client import StreamClient
from tradepilot.streaming.hub import StreamHub
from tradepilot.streaming.protocol import (
    MAX_CHANNELS_PER_MESSAGE,
    MAX_MESSAGE_CHARS,
    PROTOCOL_VERSION,
    ChannelKind,
    ErrorCode,
    ProtocolError,
    error,
    message,
    parse_channel,
    parse_client_message,
)

logger = logging.getLogger("tradepilot.streaming")


def welcome(hub: StreamHub) -> str:
    return message("welcome", version=PROTOCOL_VERSION, auth_timeout=hub.auth_timeout, heartbeat=hub.heartbeat)


class Conversation:
    def __init__(self, hub: StreamHub, client: StreamClient) -> None:
        self.hub, self.client = hub, client
        self._handlers = {"auth": self._auth, "subscribe": self._subscribe, "unsubscribe": self._unsubscribe,
                          "resync": self._resync, "ping": self._ping, "pong": self._pong}

    def reply_error(self, code: ErrorCode, text: str, **fields: Any) -> None:
        self.client.send(error(code, text, **fields))

    async def handle(self, text: str) -> None:
        client = self.client
        client.last_received = time.monotonic()
        if len(text) > MAX_MESSAGE_CHARS:
            self.reply_error(ErrorCode.MESSAGE_TOO_LARGE, f"Messages are at most {MAX_MESSAGE_CHARS} characters.")
            return
        if not client.allow_message():
            self.reply_error(ErrorCode.RATE_LIMITED, "Too many messages; at most 10 per second.")
            return
        try:
            msg = parse_client_message(text)
        except ProtocolError as exc:
            self.reply_error(exc.code, str(exc))
            return
        request_id = msg.get("id")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) or len(str(request_id)) > 64:
            request_id = None
        kind = msg["type"]
        if client.principal is None and kind not in ("auth", "ping"):
            client.close(ErrorCode.AUTH_REQUIRED, "The first message must be {\"type\":\"auth\",...}.")
            return
        handler = self._handlers.get(kind)
        if handler is None:
            self.reply_error(ErrorCode.BAD_REQUEST, f"Unknown message type {kind[:40]!r}.", id=request_id)
            return
        await handler(msg, request_id)

    async def _auth(self, msg: dict[str, Any], request_id: Any) -> None:
        client, token, api_key = self.client, msg.get("token"), msg.get("api_key")
        if isinstance(token, str) and token and api_key is None:
            credential = ("token", token)
        elif isinstance(api_key, str) and api_key and token is None:
            credential = ("api_key", api_key)
        else:
            client.close(ErrorCode.INVALID_TOKEN, "Send either 'token' (an access token) or 'api_key'.")
            return
        try:
            principal = await self.hub.authenticate(*credential, client.ip)
        except Unauthorized as exc:
            code = ErrorCode.SESSION_ENDED if exc.code == "session_revoked" else ErrorCode.INVALID_TOKEN
            client.close(code, exc.detail)
            return
        if client.closing is not None:
            return
        if client.principal is not None and principal.id != client.principal.id:
            client.close(ErrorCode.FORBIDDEN, "A connection belongs to one user; open another for this one.")
            return
        if "read" not in principal.scopes:
            client.close(ErrorCode.FORBIDDEN, "This credential lacks the 'read' scope.")
            return
        if not ip_allowed(principal.ip_allowlist, client.ip):
            client.close(ErrorCode.FORBIDDEN, "Your account does not accept connections from this address.")
            return
        limit = await self.hub.subscription_limit(principal)
        self.hub.authenticated(client, principal, credential, limit)
        expires = client.expires_at.isoformat() if client.expires_at is not None else None
        client.send(message("authenticated", id=request_id, user_id=str(principal.id), plan=principal.plan,
                            expires_at=expires, subscription_limit=limit))

    def _channels(self, msg: dict[str, Any], request_id: Any) -> list[Any] | None:
        channels = msg.get("channels", [msg["channel"]] if "channel" in msg else None)
        if not isinstance(channels, list) or not channels or len(channels) > MAX_CHANNELS_PER_MESSAGE:
            self.reply_error(ErrorCode.BAD_REQUEST, "Give 'channels': a list of 1 to "
                             f"{MAX_CHANNELS_PER_MESSAGE} channel names.", id=request_id)
            return None
        return channels

    async def _subscribe(self, msg: dict[str, Any], request_id: Any) -> None:
        client, channels = self.client, self._channels(msg, request_id)
        if channels is None:
            return
        resume_from = msg.get("resume_from")
        if resume_from is not None and (not isinstance(resume_from, int) or isinstance(resume_from, bool)
                                        or resume_from < 0):
            self.reply_error(ErrorCode.BAD_REQUEST, "'resume_from' is the last account seq you received "
                             "(an integer >= 0).", id=request_id)
            return
        for raw in channels:
            if client.closing is not None:
                return
            try:
                channel = parse_channel(raw)
            except ProtocolError as exc:
                self.reply_error(exc.code, str(exc), id=request_id, channel=raw if isinstance(raw, str) else None)
                continue
            name = channel.name
            if name in client.channels:
                client.send(message("subscribed", id=request_id, channel=name))
                continue
            if len(client.channels) >= client.subscription_limit:
                self.reply_error(ErrorCode.SUBSCRIPTION_LIMIT, f"Your plan allows {client.subscription_limit} "
                                 "subscriptions per connection.", id=request_id, channel=name,
                                 limit=client.subscription_limit)
                continue
            if channel.symbol is not None:
                problem = await self.hub.check_symbol(channel.symbol)
                if problem is not None:
                    self.reply_error(ErrorCode.UNKNOWN_SYMBOL, problem, id=request_id, channel=name)
                    continue
            resume = resume_from if channel.kind is ChannelKind.ACCOUNT else None
            await self.hub.subscribe(client, channel, request_id=request_id, resume_from=resume)

    async def _unsubscribe(self, msg: dict[str, Any], request_id: Any) -> None:
        channels = self._channels(msg, request_id)
        for raw in channels or ():
            try:
                name = parse_channel(raw).name
            except ProtocolError as exc:
                self.reply_error(exc.code, str(exc), id=request_id, channel=raw if isinstance(raw, str) else None)
                continue
            if name not in self.client.channels:
                self.reply_error(ErrorCode.NOT_SUBSCRIBED, f"Not subscribed to {name}.", id=request_id, channel=name)
                continue
            self.hub.unsubscribe(self.client, name)
            self.client.send(message("unsubscribed", id=request_id, channel=name))

    async def _resync(self, msg: dict[str, Any], request_id: Any) -> None:
        try:
            channel = parse_channel(msg.get("channel"))
        except ProtocolError as exc:
            self.reply_error(exc.code, str(exc), id=request_id)
            return
        if channel.kind is not ChannelKind.ORDERBOOK:
            self.reply_error(ErrorCode.BAD_REQUEST, "Only orderbook channels resync; for account, subscribe "
                             "again with resume_from.", id=request_id, channel=channel.name)
        elif not self.hub.resync_book(self.client, channel.name):
            self.reply_error(ErrorCode.NOT_SUBSCRIBED, f"Not subscribed to {channel.name}.", id=request_id,
                             channel=channel.name)

    async def _ping(self, msg: dict[str, Any], request_id: Any) -> None:
        ts = msg.get("ts")
        self.client.send(message("pong", id=request_id, ts=ts if isinstance(ts, str | int) else None))

    async def _pong(self, msg: dict[str, Any], request_id: Any) -> None:
        return None  # last_received is already updated
