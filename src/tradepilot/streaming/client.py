"""One connected client: its bounded send queue, its writer task, and how it is closed.

The bus handlers never wait for a client. When nothing is queued for the client and its
socket takes data without waiting (the transport is not paused by flow control), a frame
is written at once, in the handler: no task switch, no ASGI round trip. Otherwise it goes
into the client's :class:`SendQueue` (bounded) or, for conflatable channels, replaces the
pending value of that channel, and the client's writer task alone awaits the socket. A
client that cannot keep up either sees only the newest ticker/book (conflation) or, for
channels that must not lose messages, is disconnected with ``slow_consumer`` once its
queue is full. A writer stuck in one send past the limit (a stalled peer) is found by the
hub's watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from tradepilot.identity.principal import AuthUser
from tradepilot.streaming.account import AccountCursor
from tradepilot.streaming.book import BookCursor, BookFeed
from tradepilot.streaming.protocol import CLOSE_CODES, Channel, CloseCode, ErrorCode, error

logger = logging.getLogger("tradepilot.streaming")

CLOSE_TIMEOUT = 2.0  # seconds for the goodbye (error + close frame) before the socket is dropped


class _Slot:
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


class SendQueue:
    """A FIFO of outgoing items with latest-only slots.

    ``put`` appends an item that must be delivered; it refuses (returns False) once
    ``limit`` such items wait. ``put_latest`` keeps one pending value per key at the
    position of the first: later values replace it until the writer takes it.
    """

    __slots__ = ("_frames", "_items", "_slots", "_waiter", "conflated", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.conflated = 0  # values replaced before being sent
        self._items: deque[Any] = deque()
        self._slots: dict[str, Any] = {}
        self._frames = 0
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending_frames(self) -> int:
        return self._frames

    def put(self, item: Any) -> bool:
        if self._frames >= self.limit:
            return False
        self._items.append(item)
        self._frames += 1
        self.wake()
        return True

    def put_latest(self, key: str, value: Any) -> None:
        if key in self._slots:
            self._slots[key] = value
            self.conflated += 1
            return
        self._slots[key] = value
        self._items.append(_Slot(key))
        self.wake()

    def pop(self) -> tuple[str | None, Any] | None:
        """``(None, item)``, ``(key, latest value)`` for a slot, or ``None`` when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is _Slot:
            return item.key, self._slots.pop(item.key)
        self._frames -= 1
        return None, item

    def clear(self) -> None:
        self._items.clear()
        self._slots.clear()
        self._frames = 0

    async def wait(self) -> None:
        """Return when there is something to pop."""
        if self._items:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Transport(Protocol):
    """What a client needs of its socket (the router adapts Starlette's WebSocket).

    A transport may also offer a synchronous fast path: ``send_now(text) -> bool`` writes
    one text frame at once if the socket takes it without waiting (open, not paused by flow
    control) and returns False, having written nothing, otherwise; ``can_send_now() -> bool``
    asks the same question without writing. Without them every frame goes through the
    writer task and ``send_text``.
    """

    async def send_text(self, text: str) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...
    def abort(self) -> None: ...


class StreamClient:
    """Server-side state of one WebSocket connection."""

    _ids = 0

    def __init__(self, transport: Transport, *, ip: str | None, queue_size: int,
                 on_sent: Callable[[int], None], on_closed: Callable[[StreamClient, str], None]) -> None:
        StreamClient._ids += 1
        self.id = StreamClient._ids
        self.transport = transport
        self.ip = ip
        self.queue = SendQueue(queue_size)
        self._send_now: Callable[[str], bool] | None = getattr(transport, "send_now", None)
        self._can_send_now: Callable[[], bool] | None = getattr(transport, "can_send_now", None)
        if self._send_now is None or self._can_send_now is None:
            self._send_now = self._can_send_now = None
        self._on_sent = on_sent
        self._on_closed = on_closed
        now = time.monotonic()
        self.connected_at = now
        # authentication
        self.principal: AuthUser | None = None
        self.credential: tuple[str, str] | None = None  # ("token" | "api_key", secret): for revalidation
        self.api_key_lookup: str | None = None
        self.expires_at: datetime | None = None
        self.expiry_notified = False
        self.subscription_limit = 0
        self.last_validated = now
        # subscriptions
        self.channels: dict[str, Channel] = {}
        self.books: dict[str, BookCursor] = {}
        self.account: AccountCursor | None = None
        # liveness
        self.last_ping = now
        self.last_received = now
        self.sending_since: float | None = None
        self.closing: str | None = None  # the reason, once closing
        self._tokens = 20.0  # client-message token bucket
        self._tokens_at = now
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.id if self.principal is not None else None

    @property
    def session_id(self) -> uuid.UUID | None:
        return self.principal.session_id if self.principal is not None else None

    # --- sending -------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"ws-writer-{self.id}")

    def send(self, frame: str) -> bool:
        """Send a frame that must not be lost: at once if possible, else queued; a full
        queue closes the client (slow consumer). False if the client is closing."""
        if self.closing is not None:
            return False
        if self.push(frame):
            self._on_sent(1)
        return self.closing is None

    def send_latest(self, key: str, value: str | BookFeed) -> None:
        """Send the newest value of a conflatable channel (a ticker frame or a book feed)."""
        if self.push_latest(key, value):
            self._on_sent(1)

    def push(self, frame: str) -> bool:
        """``send`` for fan-out loops: True if the frame was written at once (the caller
        counts it for the metric), False if it was queued or refused."""
        if self.closing is not None:
            return False
        # at once only if nothing is queued and no send is in progress (order is kept) and
        # the socket takes it without waiting; otherwise the writer task sends it
        if self._send_now is not None and self.sending_since is None and not self.queue._items \
                and self._write_now(frame):
            return True
        self._enqueue(frame)
        return False

    def push_latest(self, key: str, value: str | BookFeed) -> bool:
        """``send_latest`` for fan-out loops: True if written at once (the caller counts it)."""
        if self.closing is not None:
            return False
        if self._send_now is not None and self.sending_since is None and not self.queue._items:
            # a socket paused by flow control (a laggard) gets its values conflated in the queue
            if type(value) is str:
                if self._write_now(value):
                    return True
            elif self._ready():
                frame = self._render(key, value)  # a book delta is rendered only when it goes out
                if frame is None:
                    return False
                if self._write_now(frame):
                    return True
                self._enqueue(frame)  # rendered (the cursor moved on): it must go out as it is
                return False
        self.queue.put_latest(key, value)
        return False

    def _enqueue(self, frame: str) -> None:
        if not self.queue.put(frame):
            self.close(ErrorCode.SLOW_CONSUMER, "You are not reading fast enough; the queue of "
                       f"{self.queue.limit} messages is full.")

    def _ready(self) -> bool:
        try:
            return self._can_send_now is not None and self._can_send_now()
        except Exception:  # see _write_now
            logger.debug("direct websocket write failed; using the writer task", exc_info=True)
            self._send_now = self._can_send_now = None
            return False

    def _write_now(self, frame: str) -> bool:
        """True if written; False if the socket would make us wait: the caller queues it."""
        try:
            return self._send_now(frame)  # type: ignore[misc]
        except Exception:
            # a connection that broke under us, or a server whose internals changed: from now
            # on this client's frames go through the writer task and the ASGI send
            logger.debug("direct websocket write failed; using the writer task", exc_info=True)
            self._send_now = self._can_send_now = None
            return False

    def _render(self, key: str | None, value: Any) -> str | None:
        if key is None or key[0] == "_":
            return value  # type: ignore[no-any-return]
        if key not in self.channels:
            return None  # unsubscribed while queued
        if isinstance(value, BookFeed):
            cursor = self.books.get(key)
            return cursor.render(value) if cursor is not None else None
        return value  # type: ignore[no-any-return]

    async def _write_loop(self) -> None:
        queue, send = self.queue, self.transport.send_text
        try:
            while True:
                await queue.wait()
                sent = 0
                while (item := queue.pop()) is not None:
                    frame = self._render(*item)
                    if frame is None:
                        continue
                    self.sending_since = time.monotonic()
                    await send(frame)
                    sent += 1
                self.sending_since = None
                if sent:
                    self._on_sent(sent)
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away: the reader sees the disconnect and cleans up
            self.sending_since = None
            logger.debug("websocket send failed", exc_info=True)

    # --- closing -------------------------------------------------------------------------

    def allow_message(self) -> bool:
        """Token bucket for client messages: 20 at once, 10 per second after that."""
        now = time.monotonic()
        self._tokens = min(20.0, self._tokens + (now - self._tokens_at) * 10.0)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def close(self, code: ErrorCode | None, text: str = "", *,
              close_code: CloseCode | None = None) -> None:
        """Say why (an ``error`` message), then close with the code's close code; never waits.

        Whatever is still queued is dropped. If the peer does not take the goodbye within a
        few seconds (it stopped reading), the connection is dropped.
        """
        if self.closing is not None:
            return
        reason = code.value if code is not None else "normal"
        self.closing = reason
        self.queue.clear()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        frame = error(code, text) if code is not None else None
        status = close_code or (CLOSE_CODES.get(code, CloseCode.NORMAL) if code else CloseCode.NORMAL)
        self._on_closed(self, reason)
        self._closer = asyncio.get_running_loop().create_task(self._goodbye(frame, int(status), reason))

    async def _goodbye(self, frame: str | None, status: int, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                if self._writer is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._writer
                if frame is not None:
                    await self.transport.send_text(frame)
                await self.transport.close(status, reason)
        except Exception:  # stalled or gone: drop the connection without a goodbye
            self.transport.abort()

    async def wait_closed(self) -> None:
        """Cancel the writer (if not closing already) and wait for a goodbye in progress."""
        if self._writer is not None and self.closing is None:
            self._writer.cancel()
        for task in (self._writer, self._closer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

