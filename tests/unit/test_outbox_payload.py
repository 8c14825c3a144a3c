"""Event payloads become JSON at emit time, exactly (Decimal as plain strings)."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tradepilot.core.outbox import jsonable


class Side(enum.Enum):
    BUY = "buy"


def test_jsonable_converts_exact_and_rich_types() -> None:
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    at = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    payload = {
        "price": Decimal("100.50"),
        "tiny": Decimal("1E-18"),
        "big": Decimal("1E+3"),
        "id": uid,
        "at": at,
        "day": date(2026, 1, 2),
        "side": Side.BUY,
        "fills": ({"qty": Decimal("0.10")},),
        "tags": ["a"],
        "n": 3,
        "ok": True,
        "none": None,
        "f": 0.5,
    }
    out = jsonable(payload)
    assert out == {
        "price": "100.5",
        "tiny": "0.000000000000000001",
        "big": "1000",
        "id": "12345678-1234-5678-1234-567812345678",
        "at": "2026-01-02T03:04:05+00:00",
        "day": "2026-01-02",
        "side": "buy",
        "fills": [{"qty": "0.1"}],
        "tags": ["a"],
        "n": 3,
        "ok": True,
        "none": None,
        "f": 0.5,
    }
    assert json.loads(json.dumps(out)) == out


@pytest.mark.parametrize(
    "bad",
    [
        {"x": object()},
        {1: "int key"},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {"naive": datetime(2026, 1, 1)},
        {"bytes": b"raw"},
    ],
)
def test_jsonable_refuses_what_json_cannot_carry_faithfully(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(TypeError):
        jsonable(bad)
