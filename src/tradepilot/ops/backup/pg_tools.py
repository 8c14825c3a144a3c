"""PostgreSQL: ``pg_dump`` / ``pg_restore`` as subprocesses, scratch databases, and the swap.

The URL's credentials reach the tools through the environment (``PGPASSWORD``…), never
through argv, where every local user could read them in ``ps``. The dump is taken from a
snapshot exported by our own REPEATABLE READ transaction (``pg_dump --snapshot``), so the
row counts and digests of the manifest describe exactly what was dumped.

A restore goes into a scratch database first (created next to the live one), is verified
and migrated there, and only then replaces the live database by two renames. Until the
renames nothing of the live database has changed; they take a moment, during which the
platform is in maintenance mode. This needs the database role to own the live database and
to have ``CREATEDB`` (verification uses scratch databases too).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tradepilot.ops.backup.errors import BackupFailed

MAINTENANCE_DATABASE = "postgres"
RENAME_ATTEMPTS = 20


@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL database lives, split into what tools take as environment."""

    url: URL

    @classmethod
    def parse(cls, url: str) -> PgTarget:
        return cls(make_url(url))

    @property
    def database(self) -> str:
        return str(self.url.database)

    def with_database(self, name: str) -> PgTarget:
        return PgTarget(self.url.set(database=name))

    def sqlalchemy_url(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGDATABASE"] = self.database
        if self.url.host:
            env["PGHOST"] = self.url.host
        if self.url.port:
            env["PGPORT"] = str(self.url.port)
        if self.url.username:
            env["PGUSER"] = self.url.username
        if self.url.password:
            env["PGPASSWORD"] = str(self.url.password)
        ssl = self.url.query.get("ssl") or self.url.query.get("sslmode")
        if isinstance(ssl, str):
            env["PGSSLMODE"] = ssl
        return env


def tool_path(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupFailed(f"`{name}` is not installed (install the PostgreSQL client tools, the same major "
                           "version as the server or newer).")
    return found


async def run_tool(target: PgTarget, *args: str) -> None:
    """Run a PostgreSQL client tool against ``target``; its stderr becomes the error."""
    process = await asyncio.create_subprocess_exec(
        tool_path(args[0]), *args[1:], env=target.environment(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip().splitlines()
        raise BackupFailed(f"{args[0]} failed: {' / '.join(message[-3:]) or f'exit code {process.returncode}'}")


async def dump(target: PgTarget, output: Path, *, snapshot: str | None) -> None:
    args = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={output}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    await run_tool(target, *args)


async def restore_into(target: PgTarget, dump_file: Path) -> None:
    """Load a dump into an empty database, stopping at the first error."""
    await run_tool(target, "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                   f"--dbname={target.database}", str(dump_file))


def admin_engine(target: PgTarget) -> AsyncEngine:
    """An autocommit engine on the server's maintenance database (CREATE/ALTER/DROP DATABASE)."""
    return create_async_engine(target.with_database(MAINTENANCE_DATABASE).sqlalchemy_url(),
                               isolation_level="AUTOCOMMIT", poolclass=NullPool)


SCRATCH_PURPOSES = ("restore", "replaced")
LIVE_PREFIX_LENGTH = 36  # + "_replaced_" + 8 + "_" + 6 stays within PostgreSQL's 63-byte names


def scratch_name(live: str, purpose: str, *, created: float | None = None) -> str:
    """``<live>_<purpose>_<unix time, hex>_<random>``: the creation time is in the name because
    PostgreSQL keeps none, and a leftover's age is what tells it from one in use."""
    stamp = int(time.time() if created is None else created)
    return f"{live[:LIVE_PREFIX_LENGTH]}_{purpose}_{stamp:08x}_{uuid.uuid4().hex[:6]}"


def scratch_created(live: str, name: str) -> float | None:
    """When ``name`` was created, if it is one of ``live``'s scratch databases (else None)."""
    pattern = (re.escape(live[:LIVE_PREFIX_LENGTH]) + "_(?:" + "|".join(SCRATCH_PURPOSES)
               + ")_([0-9a-f]{8})_[0-9a-f]{6}")
    match = re.fullmatch(pattern, name)
    return float(int(match.group(1), 16)) if match and name != live else None


async def drop_stale_scratch(target: PgTarget, *, older_than: float, now: float | None = None) -> list[str]:
    """Drop the scratch databases of ``target``'s database created more than ``older_than``
    seconds ago — left by a restore or verification that crashed. Only names of our own
    pattern are touched; a ``replaced`` one (the old live data, renamed aside during a swap)
    only while the live database exists, since otherwise it may be the only copy."""
    now = time.time() if now is None else now
    engine = admin_engine(target)
    dropped: list[str] = []
    try:
        async with engine.connect() as conn:
            names = set((await conn.execute(text("SELECT datname FROM pg_database"))).scalars())
            for name in sorted(names):
                created = scratch_created(target.database, name)
                if created is None or now - created < older_than:
                    continue
                purpose = name[len(target.database[:LIVE_PREFIX_LENGTH]) + 1:].split("_", 1)[0]
                if purpose == "replaced" and target.database not in names:
                    continue
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                dropped.append(name)
    finally:
        await engine.dispose()
    return dropped


async def create_database(target: PgTarget, name: str) -> PgTarget:
    engine = admin_engine(target)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return target.with_database(name)


async def drop_database(target: PgTarget, name: str) -> None:
    engine = admin_engine(target)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def swap_in(target: PgTarget, replacement: str) -> None:
    """Make database ``replacement`` the live one (under the live name) and drop the old one.

    New connections to the live database are refused while other sessions are ended, then
    the live database is renamed aside and the replacement takes its name. A failure before
    the second rename puts everything back as it was.
    """
    live = target.database
    aside = scratch_name(live, "replaced")
    engine = admin_engine(target)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS false'))
            try:
                await _rename_when_idle(conn, live, aside)
            except BaseException:
                await conn.execute(text(f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true'))
                raise
            try:
                await conn.execute(text(f'ALTER DATABASE "{replacement}" RENAME TO "{live}"'))
            except BaseException:
                await conn.execute(text(f'ALTER DATABASE "{aside}" RENAME TO "{live}"'))
                await conn.execute(text(f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true'))
                raise
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{aside}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def _rename_when_idle(conn, live: str, aside: str) -> None:  # type: ignore[no-untyped-def]
    for attempt in range(RENAME_ATTEMPTS):
        await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": live})
        try:
            await conn.execute(text(f'ALTER DATABASE "{live}" RENAME TO "{aside}"'))
            return
        except DBAPIError:  # "being accessed by other users": someone reconnected in between
            if attempt == RENAME_ATTEMPTS - 1:
                raise BackupFailed("Other sessions kept the database busy; the restore was not applied.") from None
            await asyncio.sleep(0.1)
