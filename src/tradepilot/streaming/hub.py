"""The streaming hub: one per process, bridging the bus to this process's WebSocket clients.

It subscribes to ``market.*``, ``user.*``, ``identity.*`` and the broadcast topic. A bus
handler looks up the subscribed clients and queues one pre-encoded frame for each, never
awaiting a socket (see ``client.py``). A maintenance loop enforces the auth deadline,
token expiry, stalled sends, heartbeats and periodic revalidation of credentials.
With a RedisBus every replica's hub sees every event, so a client on any replica gets them.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import fields, is_dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import select

from tradepilot.core.bus import Subscription
from tradepilot.core.errors import NotFound, Unauthorized
from tradepilot.core.events import Event, Topics
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.principal import AuthUser
from tradepilot.identity.service import IdentityService, ip_allowed, parse_api_key
from tradepilot.runtime import Runtime
from tradepilot.streaming.account import AccountCursor, Replay, account_frame, load_gap
from tradepilot.streaming.book import BookCursor, BookFeed
from tradepilot.streaming.client import StreamClient, Transport
from tradepilot.streaming.protocol import (
    BROADCAST_TOPIC,
    DATA_TYPES,
    Channel,
    ChannelKind,
    ErrorCode,
    data_frame,
    dumps,
    error,
    market_channel,
    message,
)

logger = logging.getLogger("tradepilot.streaming")

BOOK_DEPTH = 50
METRICS_KEY = "streaming_metrics"
REVALIDATE_CONCURRENCY = 8  # credential re-checks (database queries) running at once

_heap_frozen = False


def freeze_startup_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach, once per process.

    Called when the first WebSocket client connects: start-up (imports, the app, its
    routes and models) is over by then, and those objects live as long as the process.
    A full collection otherwise traverses them all (about 230,000 objects, half of the
    heap with 1,000 clients), stopping the event loop, and every client's ticks, for about
    150 ms more each time (measured: ~270 ms, ~105 ms with the freeze). A collection runs
    first, so no garbage is frozen.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


class StreamMetrics:
    def __init__(self, registry: Any) -> None:
        self.clients = Gauge("tradepilot_ws_clients", "Connected WebSocket clients.", registry=registry)
        self.messages = Counter("tradepilot_ws_messages_sent_total", "Messages sent to WebSocket clients.",
                                registry=registry)
        self.conflated = Counter("tradepilot_ws_conflated_total",
                                 "Ticker/book updates superseded before a lagging client received them.",
                                 registry=registry)
        self.disconnects = Counter("tradepilot_ws_disconnects_total",
                                   "WebSocket connections closed by the server, by reason.", ["reason"],
                                   registry=registry)


class ChannelState:
    """One market channel on this process: its subscribers, sequence, newest data."""

    __slots__ = ("book", "channel", "clients", "json", "latest", "name", "seq")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.name = channel.name
        self.json = dumps(channel.name)
        self.seq = 0
        self.latest: str | None = None  # newest ticker/candle frame, sent on subscribe
        self.book = BookFeed() if channel.kind is ChannelKind.ORDERBOOK else None
        self.clients: set[StreamClient] = set()


def _as_payload(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump()  # type: ignore[no-any-return]
    return None


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    result = func(*args)
    return await result if inspect.isawaitable(result) else result


class StreamHub:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.queue_size = settings.stream_queue_size
        self.send_timeout = settings.stream_send_timeout_seconds
        self.heartbeat = settings.stream_heartbeat_seconds
        self.auth_timeout = settings.stream_auth_timeout_seconds
        self.reauth_grace = timedelta(seconds=settings.stream_reauth_grace_seconds)
        self.revalidate_every = settings.stream_revalidate_seconds
        self.replay_limit = settings.stream_replay_limit
        metrics = runtime.services.get(METRICS_KEY)
        if metrics is None:  # registered once per registry, even if streaming restarts
            metrics = runtime.services[METRICS_KEY] = StreamMetrics(runtime.metrics.registry)
        self.metrics: StreamMetrics = metrics
        self.clients: set[StreamClient] = set()
        self._channels: dict[str, ChannelState] = {}
        self._topics: dict[str, ChannelState | None] = {}
        self._users: dict[uuid.UUID, set[StreamClient]] = {}
        self._sessions: dict[uuid.UUID, set[StreamClient]] = {}
        self._api_keys: dict[str, set[StreamClient]] = {}
        self._accounts: dict[str, set[StreamClient]] = {}
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._revalidations = asyncio.Semaphore(REVALIDATE_CONCURRENCY)

    @property
    def identity(self) -> IdentityService:
        return self.runtime.services["identity"]  # type: ignore[no-any-return]

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        bus = self.runtime.bus
        self._subs = [
            await bus.subscribe("market.*", self._on_market),
            await bus.subscribe("user.*", self._on_user),
            await bus.subscribe("identity.*", self._on_identity),
            await bus.subscribe(BROADCAST_TOPIC, self._on_broadcast),
        ]
        self._maintenance = asyncio.create_task(self._maintain(), name="ws-maintenance")

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.close()
        self._subs = []
        if self._maintenance is not None:
            self._maintenance.cancel()
        for client in list(self.clients):
            client.close(ErrorCode.SERVER_SHUTDOWN, "The server is shutting down; reconnect.")
        await asyncio.gather(*(c.wait_closed() for c in list(self.clients)), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- clients -------------------------------------------------------------------------

    def attach(self, transport: Transport, ip: str | None) -> StreamClient:
        freeze_startup_heap()
        client = StreamClient(transport, ip=ip, queue_size=self.queue_size,
                              on_sent=self.metrics.messages.inc, on_closed=self._closing)
        # clients that connect together (a reconnect wave after a deploy) would get their
        # heartbeats in the same maintenance pass forever: each gets its own phase instead
        client.last_ping -= random.random() * self.heartbeat
        self.clients.add(client)
        self.metrics.clients.inc()
        client.start()
        return client

    def detach(self, client: StreamClient) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.metrics.clients.dec()
            self._unindex(client)

    def _closing(self, client: StreamClient, reason: str) -> None:
        self.metrics.disconnects.labels(reason).inc()
        self._unindex(client)

    def _unindex(self, client: StreamClient) -> None:
        for name in list(client.channels):
            state = self._channels.get(name)
            if state is not None:
                state.clients.discard(client)
        if client.principal is not None:
            self._index_remove(self._users, client.principal.id, client)
            self._index_remove(self._accounts, str(client.principal.id), client)
            if client.principal.session_id is not None:
                self._index_remove(self._sessions, client.principal.session_id, client)
        if client.api_key_lookup is not None:
            self._index_remove(self._api_keys, client.api_key_lookup, client)

    @staticmethod
    def _index_remove(index: dict[Any, set[StreamClient]], key: Any, client: StreamClient) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(client)
            if not members:
                del index[key]

    def clients_of(self, user_id: uuid.UUID) -> set[StreamClient]:
        return set(self._users.get(user_id, ()))

    # --- authentication --------------------------------------------------------------------

    async def authenticate(self, kind: str, secret: str, ip: str | None) -> AuthUser:
        """The principal for a bearer token or API key (raises ``Unauthorized``)."""
        if kind == "token":
            return await self.identity.authenticate_bearer(secret)
        return await self.identity.authenticate_api_key(secret, ip=ip)

    async def subscription_limit(self, principal: AuthUser) -> int:
        """The plan's ``websocket_subscriptions``, tightened by the user's own limits."""
        async with self.runtime.db.session() as session:
            settings = await session.scalar(select(User.settings).where(User.id == principal.id))
            await session.rollback()
        own = settings.get("limits") if isinstance(settings, dict) else None
        return effective_limits(principal.plan, own if isinstance(own, dict) else None).websocket_subscriptions

    def authenticated(self, client: StreamClient, principal: AuthUser, credential: tuple[str, str],
                      limit: int) -> None:
        if client.principal is not None:
            self._unindex_identity(client)
        client.principal, client.credential, client.subscription_limit = principal, credential, limit
        # the first periodic re-check comes between half a period and a period from now, then
        # one per period: clients that authenticate together do not all query the database in
        # the same maintenance pass (a thousand of them stalled the loop for ~0.5 s)
        client.last_validated = time.monotonic() - random.random() * self.revalidate_every / 2
        client.expires_at, client.expiry_notified = None, False
        if credential[0] == "token":
            claims = self.identity.tokens.decode_access(credential[1], now=self.runtime.clock.now())
            client.expires_at = claims.expires_at
        parsed = parse_api_key(credential[1]) if credential[0] == "api_key" else None
        client.api_key_lookup = parsed[0] if parsed else None
        self._users.setdefault(principal.id, set()).add(client)
        if principal.session_id is not None:
            self._sessions.setdefault(principal.session_id, set()).add(client)
        if client.api_key_lookup is not None:
            self._api_keys.setdefault(client.api_key_lookup, set()).add(client)
        if client.account is not None:
            self._accounts.setdefault(str(principal.id), set()).add(client)

    def _unindex_identity(self, client: StreamClient) -> None:
        principal = client.principal
        assert principal is not None
        self._index_remove(self._users, principal.id, client)
        if principal.session_id is not None:
            self._index_remove(self._sessions, principal.session_id, client)
        if client.api_key_lookup is not None:
            self._index_remove(self._api_keys, client.api_key_lookup, client)

    async def revalidate(self, client: StreamClient) -> None:
        """Authenticate the connection's credential again (plan, role, suspension may change)."""
        if client.credential is None or client.closing is not None:
            return
        async with self._revalidations:  # a burst (a user change, many due at once) is paced
            await self._revalidate(client)

    async def _revalidate(self, client: StreamClient) -> None:
        if client.credential is None or client.closing is not None:
            return
        kind, secret = client.credential
        if kind == "token" and client.expires_at is not None and self.runtime.clock.now() >= client.expires_at:
            return  # expired: the client must re-authenticate within the grace period anyway
        try:
            principal = await self.authenticate(kind, secret, client.ip)
        except Unauthorized as exc:
            client.close(ErrorCode.SESSION_ENDED, f"Your session has ended ({exc.code}); log in again.")
            return
        if client.closing is not None or client.principal is None:
            return
        if principal.id != client.principal.id:
            client.close(ErrorCode.SESSION_ENDED, "Your session has ended; log in again.")
        elif "read" not in principal.scopes or not ip_allowed(principal.ip_allowlist, client.ip):
            client.close(ErrorCode.FORBIDDEN, "This connection is no longer allowed.")
        else:
            client.principal = principal
            client.subscription_limit = await self.subscription_limit(principal)
            client.last_validated = time.monotonic()

    # --- subscriptions ---------------------------------------------------------------------

    def _state(self, channel: Channel) -> ChannelState:
        state = self._channels.get(channel.name)
        if state is None:
            state = self._channels[channel.name] = ChannelState(channel)
        return state

    async def check_symbol(self, symbol: str) -> str | None:
        """An error message if the market does not know ``symbol`` (no market service: any)."""
        market = self.runtime.services.get("market")
        if market is None:
            return None
        try:
            await _call(market.instrument, symbol)
        except NotFound as exc:
            return exc.detail or f"Unknown symbol {symbol}."
        except Exception:
            logger.warning("instrument lookup failed", exc_info=True, extra={"symbol": symbol})
        return None

    async def subscribe(self, client: StreamClient, channel: Channel, *, request_id: Any = None,
                        resume_from: int | None = None) -> None:
        name = channel.name
        client.channels[name] = channel
        if channel.kind is ChannelKind.ACCOUNT:
            cursor = client.account = AccountCursor()
            assert client.principal is not None
            self._accounts.setdefault(str(client.principal.id), set()).add(client)
            await self._catch_up(client, cursor, after=resume_from, ack=(request_id, resume_from))
            return
        state = self._state(channel)
        client.send(message("subscribed", id=request_id, channel=name))
        if state.book is not None:
            client.books[name] = BookCursor(state.json)
        state.clients.add(client)
        await self._snapshot(client, state)

    def unsubscribe(self, client: StreamClient, name: str) -> None:
        client.channels.pop(name, None)
        client.books.pop(name, None)
        if name == "account":
            client.account = None
            if client.principal is not None:
                self._index_remove(self._accounts, str(client.principal.id), client)
        state = self._channels.get(name)
        if state is not None:
            state.clients.discard(client)

    def resync_book(self, client: StreamClient, name: str) -> bool:
        cursor, state = client.books.get(name), self._channels.get(name)
        if cursor is None or state is None or state.book is None:
            return False
        cursor.reset()
        if state.book.current is not None:
            client.send_latest(name, state.book)
        return True

    async def _snapshot(self, client: StreamClient, state: ChannelState) -> None:
        channel, market = state.channel, self.runtime.services.get("market")
        if channel.kind is ChannelKind.TICKER:
            if state.latest is None and market is not None:
                payload = await self._fetch(market, "ticker", channel.symbol)
                if payload is not None and state.latest is None:
                    state.latest = data_frame("ticker", state.json, state.seq, dumps(payload))
            if state.latest is not None and state.name in client.channels:
                client.send_latest(state.name, state.latest)
        elif state.book is not None:
            if state.book.current is None and market is not None:
                payload = await self._fetch(market, "order_book", channel.symbol, BOOK_DEPTH)
                if payload is not None and state.book.current is None:
                    state.book.update(payload)
            if state.book.current is not None and state.name in client.channels:
                client.send_latest(state.name, state.book)
        elif channel.kind is ChannelKind.CANDLES and state.latest is not None:
            client.send(state.latest)

    @staticmethod
    async def _fetch(market: Any, method: str, *args: Any) -> dict[str, Any] | None:
        try:
            return _as_payload(await _call(getattr(market, method), *args))
        except Exception:
            logger.warning("market snapshot failed", exc_info=True, extra={"method": method})
            return None

    # --- account channel ---------------------------------------------------------------------

    async def _catch_up(self, client: StreamClient, cursor: AccountCursor, *, after: int | None,
                        ack: tuple[Any, int | None] | None = None) -> None:
        assert client.principal is not None
        try:
            replay = await load_gap(self.runtime, client.principal.id, after, limit=self.replay_limit)
        except Exception:
            logger.exception("account replay failed")
            replay = Replay([], cursor.last_seq, resync_required=True)
        if client.account is not cursor or client.closing is not None:
            return
        if ack is not None:
            request_id, resume_from = ack
            start = resume_from if resume_from is not None and not replay.resync_required else replay.last_seq
            client.send(message("subscribed", id=request_id, channel="account", seq=start))
        if replay.resync_required:
            client.send(message("resync_required", channel="account", seq=replay.last_seq,
                                message="Events since your last seq are no longer available; reload "
                                        "your orders, positions and balances, then continue from seq."))
            cursor.last_seq = replay.last_seq
        elif after is None:
            cursor.last_seq = replay.last_seq
        else:
            cursor.last_seq = after
            for event in replay.events:
                if not client.send(account_frame(event)):
                    return
                cursor.last_seq = event.seq or cursor.last_seq
        held, cursor.held, cursor.catching_up = cursor.held, [], False
        for seq, frame in held:
            self._deliver_account(client, cursor, seq, frame)

    def _deliver_account(self, client: StreamClient, cursor: AccountCursor, seq: int | None, frame: str) -> None:
        if cursor.catching_up:
            cursor.held.append((seq, frame))
            if len(cursor.held) > self.queue_size:
                client.close(ErrorCode.SLOW_CONSUMER, "Too many account events waiting; reconnect with resume_from.")
        elif seq is None:
            client.send(frame)
        elif seq <= cursor.last_seq:
            return  # a redelivery (the outbox relays at least once)
        elif seq == cursor.last_seq + 1:
            cursor.last_seq = seq
            client.send(frame)
        else:  # a gap: fill it from the outbox table, holding live events meanwhile
            cursor.catching_up = True
            cursor.held.append((seq, frame))
            self.spawn(self._catch_up(client, cursor, after=cursor.last_seq))

    # --- bus handlers --------------------------------------------------------------------

    async def _on_market(self, event: Event) -> None:
        try:
            state = self._topics[event.topic]
        except KeyError:
            channel = market_channel(event.topic)
            state = self._topics[event.topic] = self._state(channel) if channel is not None else None
        if state is None:
            return
        kind = state.channel.kind
        # one pass over the subscribers: each frame is written to the socket right here when
        # the client is idle and its socket writable, else queued for its writer task; the
        # metric is updated once per event, not once per client
        sent = 0
        if state.book is not None:
            state.book.update(event.payload)
            book, name = state.book, state.name
            for client in state.clients:
                sent += client.push_latest(name, book)
        else:
            state.seq += 1
            if kind is ChannelKind.TRADES and not state.clients:
                return
            frame = data_frame(DATA_TYPES[kind], state.json, state.seq, dumps(event.payload))
            if kind is ChannelKind.TICKER:
                state.latest = frame
                name = state.name
                for client in state.clients:
                    sent += client.push_latest(name, frame)
            else:
                if kind is ChannelKind.CANDLES:
                    state.latest = frame
                for client in list(state.clients):  # a full queue closes (and unindexes) the client
                    sent += client.push(frame)
        if sent:
            self.metrics.messages.inc(sent)

    async def _on_user(self, event: Event) -> None:
        if event.user_id is None:
            return
        clients = self._accounts.get(event.user_id)
        if not clients:
            return
        frame = account_frame(event)
        for client in list(clients):
            if client.account is not None:
                self._deliver_account(client, client.account, event.seq, frame)

    async def _on_identity(self, event: Event) -> None:
        payload = event.payload
        if event.topic == Topics.SESSION_REVOKED and payload.get("session_id"):
            for client in list(self._sessions.get(uuid.UUID(str(payload["session_id"])), ())):
                client.close(ErrorCode.SESSION_ENDED, "Your session has ended (logged out or revoked).")
        if event.topic == Topics.API_KEY_REVOKED and payload.get("lookup"):
            for client in list(self._api_keys.get(str(payload["lookup"]), ())):
                client.close(ErrorCode.SESSION_ENDED, "The API key of this connection was revoked.")
        user_id = payload.get("user_id")
        if user_id and (event.topic == Topics.USER_CHANGED or payload.get("all_sessions")):
            for client in self.clients_of(uuid.UUID(str(user_id))):
                self.spawn(self.revalidate(client))

    async def _on_broadcast(self, event: Event) -> None:
        frame = message("broadcast", data=event.payload.get("message"))
        for raw in event.payload.get("user_ids") or ():
            try:
                user_id = uuid.UUID(str(raw))
            except ValueError:
                continue
            for client in list(self._users.get(user_id, ())):
                client.send(frame)

    # --- maintenance -----------------------------------------------------------------------

    async def _maintain(self) -> None:
        period = max(0.05, min(0.5, self.send_timeout / 4, self.heartbeat / 2))
        while True:
            await asyncio.sleep(period)
            try:
                self.check_clients()
            except Exception:
                logger.exception("websocket maintenance failed")

    def check_clients(self) -> None:
        mono, now = time.monotonic(), self.runtime.clock.now()
        conflated = 0
        for client in list(self.clients):
            conflated += client.queue.conflated
            client.queue.conflated = 0
            if client.closing is not None:
                continue
            if client.principal is None:
                if mono - client.connected_at > self.auth_timeout:
                    client.close(ErrorCode.AUTH_REQUIRED, "Authenticate with an 'auth' message first.")
                continue
            if client.sending_since is not None and mono - client.sending_since > self.send_timeout:
                client.close(ErrorCode.SLOW_CONSUMER, f"Nothing could be sent to you for {self.send_timeout:g} s.")
                continue
            if client.expires_at is not None and now >= client.expires_at:
                if now >= client.expires_at + self.reauth_grace:
                    client.close(ErrorCode.TOKEN_EXPIRED, "Your access token expired; reconnect with a new one.")
                    continue
                if not client.expiry_notified:
                    client.expiry_notified = True
                    client.send(error(ErrorCode.TOKEN_EXPIRED, "Your access token expired: send an 'auth' message "
                                      "with a fresh token.", grace_seconds=self.reauth_grace.total_seconds()))
            if mono - client.last_ping >= self.heartbeat:
                client.last_ping = mono
                client.send_latest("_ping", message("ping", ts=now.isoformat()))
            if mono - client.last_validated >= self.revalidate_every:
                client.last_validated = mono
                self.spawn(self.revalidate(client))
        if conflated:
            self.metrics.conflated.inc(conflated)
