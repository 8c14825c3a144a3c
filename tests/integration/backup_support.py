"""Helpers of the backup tests: digests of the live database, re-authenticated admins, and
damaged or doctored archives."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.helpers import PASSWORD, bearer
from tests.integration.admin_support import make_admin
from tradepilot.ops.backup import archive, sqlite_files
from tradepilot.ops.backup.digest import TableDigest, postgres_digests, sqlite_digests
from tradepilot.ops.backup.keys import backup_cipher
from tradepilot.ops.backup.service import BackupService
from tradepilot.ops.backup.setup import backup_service
from tradepilot.ops.backup.store import BackupRecord
from tradepilot.runtime import Runtime

# what a running platform keeps changing by itself (lease renewals, relay marks, schedules, the
# equity recorder's snapshots, notifications made from events, monitoring's heartbeats): compared by the service's own scratch verification, not
# against the live database a moment later
VOLATILE_TABLES = frozenset({"lease", "outbox_event", "schedule", "schedule_firing", "job", "consumed_event",
                             "idempotency_record", "user_event_seq", "equity_day", "equity_intraday", "notification",
                             "notification_delivery",
                             "ops_uptime_segment", "ops_error_group"})  # heartbeats, error counts flushed


async def live_digests(runtime: Runtime) -> dict[str, TableDigest]:
    if runtime.db.dialect == "sqlite":
        return await asyncio.to_thread(sqlite_digests, sqlite_files.database_path(runtime.db.url))
    engine = create_async_engine(runtime.db.url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await postgres_digests(conn)
    finally:
        await engine.dispose()


def stable(digests: dict[str, TableDigest]) -> dict[str, TableDigest]:
    return {name: d for name, d in digests.items() if name not in VOLATILE_TABLES}


async def reauthenticated_admin(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, str]:
    """An admin (2FA on) who has just re-entered the password: the headers to act as them."""
    _, tokens = await make_admin(client, runtime)
    answer = await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    return bearer(tokens)


def service_of(runtime: Runtime) -> BackupService:
    return backup_service(runtime)


def archive_of(service: BackupService, record: BackupRecord) -> Path:
    return service.store.archive_path(record.id)


def doctor_manifest(service: BackupService, record: BackupRecord, **changes: object) -> None:
    """Re-write a backup with a changed manifest (properly encrypted and checksummed): how a
    backup from a newer version or another database would look."""
    cipher = backup_cipher(service.settings)
    path = archive_of(service, record)
    work = service.store.scratch_dir() / f"doctor-{record.id}"
    work.mkdir()
    manifest, config = archive.extract(path, cipher, database_target=work / "db")
    archive.write_archive(path, cipher, manifest=dataclasses.replace(manifest, **changes), config=config,
                          database_file=work / "db")
    info = archive.file_info(path)
    service.store.save_record(dataclasses.replace(record, size=info.size, sha256=info.sha256))
    (work / "db").unlink()
    work.rmdir()
