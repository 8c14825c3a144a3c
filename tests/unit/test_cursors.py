"""Pagination cursors round-trip, and anything else is 400 invalid_cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tradepilot.core.cursors import (decode_cursor, decode_seq_cursor, decode_time_cursor, encode_cursor, seq_cursor,
                                     time_cursor)
from tradepilot.core.errors import BadRequest


def test_round_trips() -> None:
    at, row = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    assert decode_time_cursor(time_cursor(at, row)) == (at, row)
    assert decode_seq_cursor(seq_cursor(42)) == 42
    assert decode_cursor(encode_cursor("a", "b|c"), 2) == ["a", "b|c"]  # the last field may hold the separator


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGEgY3Vyc29y", encode_cursor("2026-01-01T00:00:00", "nothex"),
                                    encode_cursor("2026-01-01T00:00:00", "9" * 32),  # naive time
                                    encode_cursor("seq", "-1"), encode_cursor("page", "3"), "\u00e9"])
def test_anything_else_is_invalid_cursor(cursor: str) -> None:
    for decode in (decode_time_cursor, decode_seq_cursor):
        with pytest.raises(BadRequest) as refused:
            decode(cursor)
        assert refused.value.code == "invalid_cursor"
