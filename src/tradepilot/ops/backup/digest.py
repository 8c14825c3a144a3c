"""Row counts and content digests per table, to prove a restore gave back the same data.

A table's digest is an order-independent hash of its rows: the sum, modulo 2^256, of the
SHA-256 of each row's canonical form. It needs no ``ORDER BY`` (some columns, such as
PostgreSQL ``json``, cannot be ordered), streams rows without holding them, and two tables
have the same digest exactly when they hold the same multiset of rows. Tampering is not its
concern — the archive's authenticated encryption is — it catches a restore that lost,
duplicated or altered rows.

Values are compared as the database driver returns them, so digests are comparable between
two databases of the same dialect (a backup is only ever restored into its own dialect).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MODULUS = 1 << 256


@dataclass(frozen=True, slots=True)
class TableDigest:
    rows: int
    sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "sha256": self.sha256}


class _Accumulator:
    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, row: Iterable[Any]) -> None:
        encoded = json.dumps([canonical(value) for value in row], separators=(",", ":"), ensure_ascii=False)
        self.total = (self.total + int.from_bytes(hashlib.sha256(encoded.encode()).digest(), "big")) % MODULUS
        self.rows += 1

    def result(self) -> TableDigest:
        return TableDigest(self.rows, f"{self.total:064x}")


def canonical(value: Any) -> Any:
    """A JSON-able, type-tagged form of a driver value (``1`` and ``"1"`` differ)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, Decimal):
        return ["d", str(value)]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["b", bytes(value).hex()]
    if isinstance(value, (datetime, date, time)):
        return ["t", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, (dict, list)):
        return ["j", json.dumps(value, sort_keys=True, default=str)]
    return ["r", repr(value)]


def sqlite_digests(path: Path) -> dict[str, TableDigest]:
    """Every table of a SQLite file (blocking: call it in a thread)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out = {}
        for name in names:
            acc = _Accumulator()
            for row in connection.execute(f'SELECT * FROM "{name}"'):
                acc.add(row)
            out[name] = acc.result()
        return out
    finally:
        connection.close()


async def postgres_digests(connection: AsyncConnection) -> dict[str, TableDigest]:
    """Every table of the connection's schema, read in the connection's current transaction
    (so, inside a REPEATABLE READ transaction, the same snapshot ``pg_dump`` saw)."""
    names = (await connection.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"))).scalars().all()
    out = {}
    for name in names:
        acc = _Accumulator()
        result = await connection.stream(text(f'SELECT * FROM "{name}"'))
        async for partition in result.partitions(1000):
            for row in partition:
                acc.add(row)
        out[name] = acc.result()
    return out


def differences(expected: Mapping[str, TableDigest], actual: Mapping[str, TableDigest]) -> list[str]:
    """Human-readable differences between two sets of digests (empty: identical)."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None:
            problems.append(f"{name}: not in the backup")
        elif got is None:
            problems.append(f"{name}: missing")
        elif want.rows != got.rows:
            problems.append(f"{name}: {got.rows} rows, the backup has {want.rows}")
        elif want.sha256 != got.sha256:
            problems.append(f"{name}: content differs from the backup")
    return problems
