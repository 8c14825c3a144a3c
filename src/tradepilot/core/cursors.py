"""Opaque pagination cursors: ``?cursor=`` values a list endpoint hands out and takes back.

A cursor is the sort key of the last row a page showed, joined with ``|`` and base64url
encoded without padding. Clients treat it as opaque; anything that does not decode to the
shape the endpoint expects is 400 ``invalid_cursor`` — never a 500.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from tradepilot.core.errors import BadRequest


def bad_cursor() -> BadRequest:
    return BadRequest("The cursor is not one this endpoint returned.", code="invalid_cursor")


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The cursor's ``parts`` fields (400 ``invalid_cursor`` if it has another shape)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_cursor() from None
    fields = raw.split("|", parts - 1)
    if len(fields) != parts or not all(fields):
        raise bad_cursor()
    return fields


def time_cursor(at: datetime, row_id: uuid.UUID) -> str:
    """A (timestamp, id) key: rows ordered by time, ties broken by id."""
    return encode_cursor(at.isoformat(), row_id.hex)


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    stamp, row_id = decode_cursor(cursor, 2)
    try:
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, uuid.UUID(hex=row_id)
    except ValueError:
        raise bad_cursor() from None


def seq_cursor(seq: int) -> str:
    return encode_cursor("seq", str(seq))


def decode_seq_cursor(cursor: str) -> int:
    tag, value = decode_cursor(cursor, 2)
    if tag != "seq" or not value.isdigit():
        raise bad_cursor()
    return int(value)
