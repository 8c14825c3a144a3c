"""Reading the security event log: newest first, in pages with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import BadRequest
from tradepilot.identity.models import SecurityEvent
from tradepilot.identity.security_events import SecurityEventKind


def known_kinds() -> frozenset[str]:
    """Every kind declared on ``SecurityEventKind`` (other modules may add theirs)."""
    return frozenset(v for k, v in vars(SecurityEventKind).items() if k.isupper() and isinstance(v, str))


def encode_cursor(event: SecurityEvent) -> str:
    raw = f"{event.created_at.isoformat()}|{event.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, event_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive")
        return created_at, uuid.UUID(hex=event_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not one this endpoint returned.", code="invalid_cursor") from None


async def list_security_events(session: AsyncSession, *, user_id: uuid.UUID | None, kind: str | None, limit: int,
                               cursor: str | None) -> tuple[list[SecurityEvent], str | None]:
    """A page of events (of ``user_id``, or of everyone when None) and the next page's cursor."""
    query = select(SecurityEvent)
    if user_id is not None:
        query = query.where(SecurityEvent.user_id == user_id)
    if kind is not None:
        query = query.where(SecurityEvent.kind == kind)
    if cursor is not None:
        created_at, event_id = decode_cursor(cursor)
        query = query.where(or_(SecurityEvent.created_at < created_at,
                                and_(SecurityEvent.created_at == created_at, SecurityEvent.id < event_id)))
    rows = list(await session.scalars(
        query.order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
