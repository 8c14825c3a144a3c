"""Domain events and the topics they travel on.

Topics are built by functions, never typed as bare strings at call sites, so a typo is a
NameError rather than a silently unheard message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """An immutable fact: ``type`` is a past participle (``session.revoked``)."""

    topic: str
    type: str
    payload: dict[str, Any]
    user_id: str | None = None
    seq: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    occurred_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "type": self.type, "payload": self.payload,
                "user_id": self.user_id, "seq": self.seq, "occurred_at": self.occurred_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(topic=data["topic"], type=data["type"], payload=data.get("payload") or {},
                   user_id=data.get("user_id"), seq=data.get("seq"), id=data["id"],
                   occurred_at=data["occurred_at"])


class Topics:
    """Every topic of the platform."""

    SESSION_REVOKED = "identity.session_revoked"
    USER_CHANGED = "identity.user_changed"
    API_KEY_REVOKED = "identity.api_key_revoked"

    @staticmethod
    def market(kind: str, symbol_dash: str, *extra: str) -> str:
        """``market.<kind>.<BTC-USDT>[.<extra>]``; kind is ticker, trade, book or candle."""
        return ".".join(("market", kind, symbol_dash, *extra))

    @staticmethod
    def user(user_id: str | uuid.UUID, kind: str) -> str:
        """A user's private stream (``user.<id>.<kind>``): orders, fills, notifications..."""
        return f"user.{user_id}.{kind}"

    @staticmethod
    def all_user(kind: str = "*") -> str:
        return f"user.*.{kind}"
