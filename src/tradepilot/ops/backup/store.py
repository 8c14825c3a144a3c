"""The backup directory: one ``<id>.tpbackup`` archive per backup and a ``<id>.json`` record
beside it (created_at, size, the archive's SHA-256, the manifest summary, verification).

The record holds nothing secret (counts, versions, checksums), so listing backups needs no
key and no decryption; the authoritative manifest is inside the encrypted archive. With
several replicas, the directory must be shared storage (or backups run on one host only).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tradepilot.ops.backup.errors import BackupCorrupted, BackupNotFound
from tradepilot.ops.backup.manifest import Manifest

ARCHIVE_SUFFIX = ".tpbackup"
RECORD_SUFFIX = ".json"
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def new_backup_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class BackupRecord:
    id: str
    created_at: datetime
    size: int
    sha256: str
    dialect: str
    alembic_revision: str | None
    app_version: str
    reason: str
    tables: int
    rows: int
    job_id: str | None = None
    verified: bool | None = None  # None: not verified yet
    verified_at: datetime | None = None
    verify_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest, *, size: int, sha256: str) -> BackupRecord:
        return cls(id=manifest.backup_id, created_at=manifest.created_at, size=size, sha256=sha256,
                   dialect=manifest.dialect, alembic_revision=manifest.alembic_revision,
                   app_version=manifest.app_version, reason=manifest.reason, tables=len(manifest.tables),
                   rows=manifest.total_rows, job_id=manifest.job_id)

    def to_json(self) -> bytes:
        body = asdict(self)
        for key in ("created_at", "verified_at"):
            body[key] = body[key].isoformat() if body[key] else None
        return json.dumps(body, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> BackupRecord:
        body = json.loads(raw)
        body["created_at"] = datetime.fromisoformat(body["created_at"])
        body["verified_at"] = datetime.fromisoformat(body["verified_at"]) if body.get("verified_at") else None
        return cls(**body)


class BackupStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ensure(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.directory

    def archive_path(self, backup_id: str) -> Path:
        if not ID_PATTERN.match(backup_id):  # also what keeps "../" out of the path
            raise BackupNotFound("No such backup.", extra={"backup_id": backup_id[:64]})
        return self.directory / f"{backup_id}{ARCHIVE_SUFFIX}"

    def record_path(self, backup_id: str) -> Path:
        return self.archive_path(backup_id).with_suffix(RECORD_SUFFIX)

    def scratch_dir(self) -> Path:
        """A private directory for plaintext temporaries (same filesystem as the archives)."""
        path = self.ensure() / ".work"
        path.mkdir(exist_ok=True, mode=0o700)
        return path

    def get(self, backup_id: str) -> BackupRecord:
        archive, record = self.archive_path(backup_id), self.record_path(backup_id)
        if not archive.is_file() or not record.is_file():
            raise BackupNotFound("No such backup.", extra={"backup_id": backup_id})
        try:
            return BackupRecord.from_json(record.read_bytes())
        except (ValueError, KeyError, TypeError):
            raise BackupCorrupted(f"The record of backup {backup_id} is unreadable.") from None

    def list(self) -> list[BackupRecord]:
        """Every complete backup, newest first (unreadable records are skipped)."""
        if not self.directory.is_dir():
            return []
        out = []
        for record in self.directory.glob(f"*{RECORD_SUFFIX}"):
            backup_id = record.name.removesuffix(RECORD_SUFFIX)
            if not ID_PATTERN.match(backup_id):
                continue
            try:
                out.append(self.get(backup_id))
            except (BackupNotFound, BackupCorrupted):
                continue
        return sorted(out, key=lambda r: (r.created_at, r.id), reverse=True)

    def save_record(self, record: BackupRecord) -> None:
        path = self.record_path(record.id)
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(record.to_json())
        partial.replace(path)

    def mark_verified(self, backup_id: str, *, ok: bool, at: datetime, error: str | None = None) -> BackupRecord:
        record = replace(self.get(backup_id), verified=ok, verified_at=at, verify_error=error)
        self.save_record(record)
        return record

    def check_checksum(self, record: BackupRecord) -> None:
        """The archive is still the file that was written (size and SHA-256)."""
        path = self.archive_path(record.id)
        if path.stat().st_size != record.size:
            raise BackupCorrupted(f"Backup {record.id} has the wrong size ({path.stat().st_size} bytes, "
                                  f"{record.size} written): it is truncated or damaged.")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != record.sha256:
            raise BackupCorrupted(f"Backup {record.id} fails its checksum: the file was damaged or changed.")

    def delete(self, backup_id: str) -> None:
        self.record_path(backup_id).unlink(missing_ok=True)
        self.archive_path(backup_id).unlink(missing_ok=True)

    def expired(self, *, now: datetime, keep_count: int, keep_days: int) -> list[BackupRecord]:
        """Backups retention removes: beyond the newest ``keep_count`` *and* older than
        ``keep_days`` — so the newest few always survive, however old."""
        cutoff = now - timedelta(days=keep_days)
        return [r for r in self.list()[keep_count:] if r.created_at < cutoff]
