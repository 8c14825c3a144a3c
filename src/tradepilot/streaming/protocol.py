"""The client protocol of ``/api/ws``: channel names, message types, error and close codes.

Every message is one JSON object with a ``type``. Data messages also carry ``channel``,
``seq`` and ``data``; errors carry a stable ``code`` and a human ``message``. The full
protocol is documented in ``docs/websocket.md``.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tradepilot.core.money import to_plain_string
from tradepilot.market.types import TIMEFRAMES, symbol_to_topic

PROTOCOL_VERSION = 1
BROADCAST_TOPIC = "stream.broadcast"  # StreamingManager.broadcast_to_users → every replica's hub
MAX_MESSAGE_CHARS = 16_384  # a client message longer than this is refused
MAX_CHANNELS_PER_MESSAGE = 100


class ErrorCode(enum.StrEnum):
    AUTH_REQUIRED = "auth_required"  # the first message must be ``auth`` (and within the time limit)
    INVALID_TOKEN = "invalid_token"  # bad, expired or foreign access token / API key
    TOKEN_EXPIRED = "token_expired"  # the connection's token expired: send a new ``auth``
    SESSION_ENDED = "session_ended"  # logout, revocation, suspension, API key revoked
    FORBIDDEN = "forbidden"  # missing ``read`` scope, address not allowed, another user's token
    BAD_REQUEST = "bad_request"  # not JSON, unknown message type, wrong field types
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"  # too many client messages per second
    UNKNOWN_CHANNEL = "unknown_channel"
    UNKNOWN_SYMBOL = "unknown_symbol"
    NOT_SUBSCRIBED = "not_subscribed"
    SUBSCRIPTION_LIMIT = "subscription_limit"
    SLOW_CONSUMER = "slow_consumer"
    SERVER_SHUTDOWN = "server_shutdown"
    INTERNAL_ERROR = "internal_error"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # the server is shutting down: reconnect (to another replica)
    AUTH = 4001  # auth_required, invalid_token, token_expired, session_ended: log in again
    FORBIDDEN = 4003
    SLOW_CONSUMER = 4008  # reconnect, and read faster (account events: resume_from)


CLOSE_CODES: dict[ErrorCode, CloseCode] = {
    ErrorCode.AUTH_REQUIRED: CloseCode.AUTH,
    ErrorCode.INVALID_TOKEN: CloseCode.AUTH,
    ErrorCode.TOKEN_EXPIRED: CloseCode.AUTH,
    ErrorCode.SESSION_ENDED: CloseCode.AUTH,
    ErrorCode.FORBIDDEN: CloseCode.FORBIDDEN,
    ErrorCode.SLOW_CONSUMER: CloseCode.SLOW_CONSUMER,
    ErrorCode.SERVER_SHUTDOWN: CloseCode.GOING_AWAY,
}


class ChannelKind(enum.StrEnum):
    TICKER = "ticker"
    TRADES = "trades"
    ORDERBOOK = "orderbook"
    CANDLES = "candles"
    ACCOUNT = "account"


# bus topic kind (``market.<kind>.<SYM>``) → channel kind
TOPIC_KINDS: dict[str, ChannelKind] = {
    "ticker": ChannelKind.TICKER,
    "trade": ChannelKind.TRADES,
    "book": ChannelKind.ORDERBOOK,
    "candle": ChannelKind.CANDLES,
}
# the ``type`` of data messages per channel kind
DATA_TYPES: dict[ChannelKind, str] = {
    ChannelKind.TICKER: "ticker",
    ChannelKind.TRADES: "trade",
    ChannelKind.CANDLES: "candle",
    ChannelKind.ACCOUNT: "event",
}
# latest-only for a lagging client; the others are never dropped (overflow disconnects)
CONFLATED = frozenset({ChannelKind.TICKER, ChannelKind.ORDERBOOK})

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9._]{0,31}[/-][A-Z0-9][A-Z0-9._]{0,31}$")


class ProtocolError(ValueError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Channel:
    kind: ChannelKind
    symbol: str | None = None  # BTC/USDT
    timeframe: str | None = None

    @property
    def name(self) -> str:
        if self.kind is ChannelKind.ACCOUNT:
            return "account"
        if self.kind is ChannelKind.CANDLES:
            return f"candles:{self.symbol}:{self.timeframe}"
        return f"{self.kind.value}:{self.symbol}"

    @property
    def conflated(self) -> bool:
        return self.kind in CONFLATED


def parse_channel(raw: object) -> Channel:
    """``ticker:BTC/USDT`` (or ``BTC-USDT``), ``trades:…``, ``orderbook:…``, ``candles:…:1m``,
    ``account``. Raises :class:`ProtocolError` with ``unknown_channel``."""
    if not isinstance(raw, str) or not raw or len(raw) > 80:
        raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, "A channel is a string such as 'ticker:BTC/USDT'.")
    if raw == "account":
        return Channel(ChannelKind.ACCOUNT)
    kind_name, _, rest = raw.partition(":")
    try:
        kind = ChannelKind(kind_name)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"Unknown channel {raw!r}: kinds are ticker, "
                           "trades, orderbook, candles and account.") from None
    timeframe = None
    if kind is ChannelKind.CANDLES:
        rest, _, timeframe = rest.rpartition(":")
        if timeframe not in TIMEFRAMES:
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"Unknown timeframe in {raw!r}: use one of "
                               f"{', '.join(TIMEFRAMES)}.")
    symbol = rest.upper()
    if kind is ChannelKind.ACCOUNT or not _SYMBOL.match(symbol):
        raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"Unknown channel {raw!r}: expected "
                           f"'{kind.value}:BASE/QUOTE'.")
    return Channel(kind, symbol.replace("-", "/"), timeframe)


def market_channel(topic: str) -> Channel | None:
    """The channel a bus topic feeds: ``market.book.BTC-USDT`` → ``orderbook:BTC/USDT``."""
    parts = topic.split(".")
    if len(parts) < 3 or parts[0] != "market":
        return None
    kind = TOPIC_KINDS.get(parts[1])
    if kind is None:
        return None
    symbol = parts[2].replace("-", "/")
    if kind is ChannelKind.CANDLES:
        return Channel(kind, symbol, parts[3]) if len(parts) == 4 else None
    return Channel(kind, symbol) if len(parts) == 3 else None


def topic_symbol(symbol: str) -> str:
    return symbol_to_topic(symbol)


# --- encoding ------------------------------------------------------------------------------

def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return to_plain_string(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dumps(value: Any) -> str:
    """Compact JSON; decimals as exact strings (DESIGN §3), datetimes as RFC 3339."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def data_frame(type_: str, channel_json: str, seq: int | None, data_json: str) -> str:
    """``{"type":…,"channel":…,"seq":…,"data":…}`` from already-encoded parts (one encode per
    event, whatever the number of clients)."""
    seq_json = "null" if seq is None else str(seq)
    return f'{{"type":"{type_}","channel":{channel_json},"seq":{seq_json},"data":{data_json}}}'


def message(type_: str, **fields: Any) -> str:
    return dumps({"type": type_, **{k: v for k, v in fields.items() if v is not None}})


def error(code: ErrorCode, text: str, **fields: Any) -> str:
    return message("error", code=code.value, message=text, **fields)


def parse_client_message(text: str) -> dict[str, Any]:
    """A client message: a JSON object with a string ``type`` (numbers parsed exactly)."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "Messages are JSON objects.") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "Messages are JSON objects with a string 'type'.")
    return value
