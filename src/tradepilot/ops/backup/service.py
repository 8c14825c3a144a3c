"""BackupService: create, verify and restore backups; apply retention.

It needs only settings and a clock, so the CLI uses it without a running server; the
server's job handlers and routes use the same object (``runtime.services["backup"]``).
Every refusal happens before anything live changes: the archive's checksum, decryption,
format, dialect and schema revision are checked first, then the backup is loaded into a
scratch database, checked against the manifest (row counts and digests) and migrated
there. Only then does the live database change, in one swap, under maintenance mode.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError

from tradepilot import __version__
from tradepilot.config import Settings
from tradepilot.core.clock import Clock
from tradepilot.core.errors import TradePilotError
from tradepilot.core.migrate import alembic_config
from tradepilot.ops.backup import archive
from tradepilot.ops.backup.config_backup import config_json
from tradepilot.ops.backup.databases import (
    LiveDatabase,
    finish_backup_job,
    live_database,
    migrate_to_head,
)
from tradepilot.ops.backup.digest import differences
from tradepilot.ops.backup.errors import BackupCorrupted, BackupIncompatible
from tradepilot.ops.backup.keys import backup_cipher
from tradepilot.ops.backup.manifest import CONFIG_MEMBER, Manifest
from tradepilot.ops.backup.store import BackupRecord, BackupStore, new_backup_id

logger = logging.getLogger("tradepilot.ops.backup")

SCRATCH_STALE_AFTER = timedelta(hours=6)  # no backup, verification or restore runs this long

@dataclass(frozen=True)
class RestoreReport:
    backup_id: str
    restored_revision: str | None
    head_revision: str | None
    tables: int
    rows: int


class BackupService:
    def __init__(self, settings: Settings, clock: Clock, *, database_url: str | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.database_url = database_url or settings.database_url
        self.store = BackupStore(settings.effective_backup_dir)
        self.database: LiveDatabase = live_database(self.database_url)

    # -- create ----------------------------------------------------------------------------

    async def create(self, *, reason: str = "manual", job_id: str | None = None) -> BackupRecord:
        """Snapshot the database, write the encrypted archive and its record."""
        cipher = backup_cipher(self.settings)  # refuses early in production without a key
        now = self.clock.now()
        backup_id = new_backup_id(now)
        async with self._work_dir(backup_id) as work:
            snapshot = await self.database.snapshot(work)
            config = config_json(self.settings)
            manifest = Manifest(
                backup_id=backup_id, created_at=now, app_version=__version__,
                alembic_revision=snapshot.alembic_revision, dialect=self.database.dialect,
                tables=snapshot.tables, job_id=job_id, reason=reason,
                members={CONFIG_MEMBER: archive.bytes_info(config),
                         Manifest.database_member_for(self.database.dialect): await asyncio.to_thread(
                             archive.file_info, snapshot.file)})
            target = self.store.archive_path(backup_id)
            await asyncio.to_thread(archive.write_archive, target, cipher, manifest=manifest, config=config,
                                    database_file=snapshot.file)
        written = await asyncio.to_thread(archive.file_info, target)
        record = BackupRecord.of(manifest, size=written.size, sha256=written.sha256)
        self.store.save_record(record)
        logger.info("backup written", extra={"backup_id": backup_id, "bytes": written.size,
                                             "tables": len(manifest.tables), "rows": manifest.total_rows})
        return record

    # -- verify ----------------------------------------------------------------------------

    async def verify(self, backup_id: str) -> BackupRecord:
        """Checksum, decrypt, integrity check, and a test restore into a scratch database whose
        row counts and digests must equal the manifest's. The verdict is stored in the record."""
        try:
            manifest, scratch_digests = await self._test_restore(backup_id)
            problems = differences(manifest.tables, scratch_digests)
            if problems:
                raise BackupCorrupted("The restored copy differs from the manifest: " + "; ".join(problems[:5]))
        except TradePilotError as exc:
            if self.store.record_path(backup_id).is_file():
                self.store.mark_verified(backup_id, ok=False, at=self.clock.now(), error=f"{exc.code}: {exc.detail}")
            raise
        return self.store.mark_verified(backup_id, ok=True, at=self.clock.now())

    async def _test_restore(self, backup_id: str) -> tuple[Manifest, dict]:  # type: ignore[type-arg]
        manifest = await self.check_restorable(backup_id)
        await self.sweep_scratch()
        async with self._work_dir(f"verify-{backup_id}") as work, self._scratch(backup_id, work) as (_, scratch):
            return manifest, await scratch.digests()

    # -- restore ---------------------------------------------------------------------------

    async def check_restorable(self, backup_id: str) -> Manifest:
        """The quick refusals: missing, bad checksum, undecryptable, other dialect, newer schema."""
        record = self.store.get(backup_id)
        await asyncio.to_thread(self.store.check_checksum, record)
        manifest = await asyncio.to_thread(archive.read_manifest, self.store.archive_path(backup_id),
                                           backup_cipher(self.settings))
        if manifest.backup_id != backup_id:
            raise BackupCorrupted(f"The archive {backup_id} holds backup {manifest.backup_id}: it was renamed.")
        self._check_compatible(manifest)
        return manifest

    async def restore(self, backup_id: str, *,
                      around_swap: Callable[[], AbstractAsyncContextManager[None]] | None = None) -> RestoreReport:
        """Restore ``backup_id`` into the live database.

        ``around_swap`` is an async context manager factory entered just for the swap: the
        server passes one that enters maintenance mode and disposes its connections.
        """
        manifest = await self.check_restorable(backup_id)
        await self.sweep_scratch()
        async with self._work_dir(f"restore-{backup_id}") as work, self._scratch(backup_id, work) as (_, scratch):
            problems = differences(manifest.tables, await scratch.digests())
            if problems:
                raise BackupCorrupted("The backup does not restore to what its manifest records: "
                                      + "; ".join(problems[:5]))
            await migrate_to_head(scratch.url)
            if manifest.job_id:
                await finish_backup_job(scratch.url, job_id=manifest.job_id, backup_id=backup_id,
                                        now=self.clock.now())
            if around_swap is None:
                await self.database.swap_in(scratch)
            else:
                async with around_swap():
                    await self.database.swap_in(scratch)
        logger.warning("backup restored", extra={"backup_id": backup_id, "revision": manifest.alembic_revision})
        return RestoreReport(backup_id=backup_id, restored_revision=manifest.alembic_revision,
                             head_revision=self._scripts().get_current_head(), tables=len(manifest.tables),
                             rows=manifest.total_rows)

    # -- retention -------------------------------------------------------------------------

    def apply_retention(self) -> list[str]:
        expired = self.store.expired(now=self.clock.now(), keep_count=self.settings.backup_retention_count,
                                     keep_days=self.settings.backup_retention_days)
        for record in expired:
            self.store.delete(record.id)
            logger.info("backup deleted by retention", extra={"backup_id": record.id})
        return [r.id for r in expired]

    # -- helpers ---------------------------------------------------------------------------

    def _scripts(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(alembic_config(self.database_url))

    def _check_compatible(self, manifest: Manifest) -> None:
        if manifest.dialect != self.database.dialect:
            raise BackupIncompatible(f"This is a {manifest.dialect} backup; the database is {self.database.dialect}. "
                                     "Restore it into the same kind of database.")
        if manifest.alembic_revision is not None:
            try:
                known = self._scripts().get_revision(manifest.alembic_revision)
            except CommandError:
                known = None
            if known is None:
                raise BackupIncompatible(
                    f"The backup's schema revision {manifest.alembic_revision} is unknown to this TradePilot "
                    f"({__version__}); it was made by a newer version. Upgrade TradePilot, then restore.")

    async def sweep_scratch(self) -> list[str]:
        """Remove what a crashed backup, verification or restore left behind — work directories
        (plaintext extracts, SQLite scratch files) and PostgreSQL scratch databases — older than
        ``SCRATCH_STALE_AFTER``; younger ones may belong to a run in progress on another process.
        Called before each verification and restore. Returns what was removed."""
        limit = SCRATCH_STALE_AFTER.total_seconds()
        removed: list[str] = []
        now = time.time()  # file and database ages are the host's facts, not the platform clock's
        for entry in self.store.scratch_dir().iterdir():
            try:
                old = now - entry.stat().st_mtime >= limit
            except FileNotFoundError:
                continue
            if not old:
                continue
            if entry.is_dir():
                await asyncio.to_thread(shutil.rmtree, entry, True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
        removed += await self.database.drop_stale_scratch(limit)
        if removed:
            logger.warning("stale backup scratch removed", extra={"removed": removed})
        return removed

    @asynccontextmanager
    async def _work_dir(self, name: str) -> AsyncIterator[Path]:
        """A fresh directory per run (a crashed run's leftover never blocks a retry)."""
        path = self.store.scratch_dir() / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @asynccontextmanager
    async def _scratch(self, backup_id: str, work: Path):  # type: ignore[no-untyped-def]
        """Extract the archive and load its database into a scratch database (discarded after)."""
        database_file = work / "database"
        manifest, _ = await asyncio.to_thread(archive.extract, self.store.archive_path(backup_id),
                                              backup_cipher(self.settings), database_target=database_file)
        scratch = await self.database.load_scratch(database_file, work)
        try:
            yield manifest, scratch
        finally:
            await scratch.discard()
