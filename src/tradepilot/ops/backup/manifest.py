"""The manifest: what a backup holds, and what a restore must find again.

It is the first member of the (encrypted) archive, so a restore can check compatibility
before it touches anything, and it records, per table, the row count and content digest
(``digest.py``) of the exact snapshot that was saved, plus the SHA-256 of every member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tradepilot.ops.backup.digest import TableDigest
from tradepilot.ops.backup.errors import BackupCorrupted, BackupIncompatible

FORMAT_VERSION = 1
MANIFEST_MEMBER = "manifest.json"
CONFIG_MEMBER = "config.json"
DATABASE_MEMBERS = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}


@dataclass(frozen=True)
class MemberInfo:
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    created_at: datetime
    app_version: str
    alembic_revision: str | None
    dialect: str
    tables: dict[str, TableDigest]
    members: dict[str, MemberInfo]
    format_version: int = FORMAT_VERSION
    job_id: str | None = None
    reason: str = "manual"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def database_member(self) -> str:
        return self.database_member_for(self.dialect)

    @staticmethod
    def database_member_for(dialect: str) -> str:
        return DATABASE_MEMBERS[dialect]

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> bytes:
        body = {
            "format_version": self.format_version,
            "backup_id": self.backup_id,
            "created_at": self.created_at.isoformat(),
            "app_version": self.app_version,
            "alembic_revision": self.alembic_revision,
            "dialect": self.dialect,
            "reason": self.reason,
            "job_id": self.job_id,
            "members": {name: {"size": m.size, "sha256": m.sha256} for name, m in sorted(self.members.items())},
            "tables": {name: t.as_json() for name, t in sorted(self.tables.items())},
            "extra": self.extra,
        }
        return json.dumps(body, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
            version = int(body["format_version"])
        except (ValueError, KeyError, TypeError):
            raise BackupCorrupted("The backup's manifest is unreadable.") from None
        if version > FORMAT_VERSION:
            raise BackupIncompatible(f"The backup has format version {version}; this TradePilot reads up to "
                                     f"{FORMAT_VERSION}. Restore it with a newer TradePilot.")
        try:
            return cls(
                backup_id=body["backup_id"], created_at=datetime.fromisoformat(body["created_at"]),
                app_version=body["app_version"], alembic_revision=body["alembic_revision"],
                dialect=body["dialect"], format_version=version, reason=body.get("reason", "manual"),
                job_id=body.get("job_id"), extra=body.get("extra") or {},
                members={n: MemberInfo(int(m["size"]), str(m["sha256"])) for n, m in body["members"].items()},
                tables={n: TableDigest(int(t["rows"]), str(t["sha256"])) for n, t in body["tables"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BackupCorrupted("The backup's manifest is incomplete.") from None
