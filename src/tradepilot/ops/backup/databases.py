"""The two database kinds behind one interface: take a consistent snapshot (file + digests),
load a backed-up file into a scratch database, read its digests, migrate it, swap it in.

``SqliteDatabase`` works on files with the online backup API (``sqlite_files``);
``PostgresDatabase`` on ``pg_dump`` custom-format files and scratch databases (``pg_tools``).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tradepilot.core import migrate
from tradepilot.ops.backup import pg_tools, sqlite_files
from tradepilot.ops.backup.digest import TableDigest, postgres_digests, sqlite_digests


@dataclass(frozen=True)
class Snapshot:
    file: Path
    tables: dict[str, TableDigest]
    alembic_revision: str | None


class Scratch(Protocol):
    """A restored copy, not yet live."""

    url: str

    async def digests(self) -> dict[str, TableDigest]: ...
    async def discard(self) -> None: ...


class LiveDatabase(Protocol):
    dialect: str

    async def snapshot(self, work_dir: Path) -> Snapshot: ...
    async def load_scratch(self, database_file: Path, work_dir: Path) -> Scratch: ...
    async def swap_in(self, scratch: Scratch) -> None: ...
    async def drop_stale_scratch(self, older_than: float) -> list[str]: ...


def live_database(url: str) -> LiveDatabase:
    return SqliteDatabase(url) if url.startswith("sqlite") else PostgresDatabase(url)


async def migrate_to_head(url: str) -> None:
    """Alembic's env runs its own event loop: run it in a thread."""
    await asyncio.to_thread(migrate.upgrade, url)


async def finish_backup_job(url: str, *, job_id: str, backup_id: str, now: datetime) -> None:
    """In a restored copy, the job that took the backup was still running when it was taken;
    record it as done, or the reaper would re-run it (and take another backup)."""
    from tradepilot.jobs.models import Job, JobStatus

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(Job).where(Job.id == uuid.UUID(job_id), Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
                .values(status=JobStatus.SUCCEEDED, progress=1.0, finished_at=now, worker_id=None,
                        result={"backup_id": backup_id}))
    finally:
        await engine.dispose()


# --- SQLite ---------------------------------------------------------------------------------

@dataclass
class SqliteScratch:
    path: Path

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.path}"

    async def digests(self) -> dict[str, TableDigest]:
        return await asyncio.to_thread(sqlite_digests, self.path)

    async def discard(self) -> None:
        sqlite_files.remove_database_files(self.path)


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.path = sqlite_files.database_path(url)

    async def snapshot(self, work_dir: Path) -> Snapshot:
        target = work_dir / "database.sqlite"
        await asyncio.to_thread(sqlite_files.copy_database, self.path, target)
        tables = await asyncio.to_thread(sqlite_digests, target)
        revision = await asyncio.to_thread(sqlite_files.alembic_revision, target)
        return Snapshot(file=target, tables=tables, alembic_revision=revision)

    async def load_scratch(self, database_file: Path, work_dir: Path) -> SqliteScratch:
        """The extracted file is the scratch database, once it passes ``integrity_check``."""
        await asyncio.to_thread(sqlite_files.integrity_check, database_file)
        return SqliteScratch(database_file)

    async def swap_in(self, scratch: Scratch) -> None:
        assert isinstance(scratch, SqliteScratch)
        await asyncio.to_thread(sqlite_files.copy_database, scratch.path, self.path)

    async def drop_stale_scratch(self, older_than: float) -> list[str]:
        """SQLite scratch databases are files in the work directories (swept with them)."""
        return []


# --- PostgreSQL -------------------------------------------------------------------------------

@dataclass
class PostgresScratch:
    live: pg_tools.PgTarget
    name: str

    @property
    def url(self) -> str:
        return self.live.with_database(self.name).sqlalchemy_url()

    async def digests(self) -> dict[str, TableDigest]:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await postgres_digests(conn)
        finally:
            await engine.dispose()

    async def discard(self) -> None:
        await pg_tools.drop_database(self.live, self.name)


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.target = pg_tools.PgTarget.parse(url)

    async def snapshot(self, work_dir: Path) -> Snapshot:
        """``pg_dump`` from the snapshot our REPEATABLE READ transaction exports, and the
        digests and Alembic revision read in that same transaction."""
        target = work_dir / "database.pgdump"
        engine = create_async_engine(self.target.sqlalchemy_url(), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    exported = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                    await pg_tools.dump(self.target, target, snapshot=exported)
                    tables = await postgres_digests(conn)
                    revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        finally:
            await engine.dispose()
        return Snapshot(file=target, tables=tables, alembic_revision=revision)

    async def load_scratch(self, database_file: Path, work_dir: Path) -> PostgresScratch:
        name = pg_tools.scratch_name(self.target.database, "restore")
        scratch = await pg_tools.create_database(self.target, name)
        try:
            await pg_tools.restore_into(scratch, database_file)
        except BaseException:
            await pg_tools.drop_database(self.target, name)
            raise
        return PostgresScratch(self.target, name)

    async def swap_in(self, scratch: Scratch) -> None:
        assert isinstance(scratch, PostgresScratch)
        await pg_tools.swap_in(self.target, scratch.name)

    async def drop_stale_scratch(self, older_than: float) -> list[str]:
        return await pg_tools.drop_stale_scratch(self.target, older_than=older_than)
