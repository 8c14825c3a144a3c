"""SQLite: a consistent copy of the live file, its integrity check, and the swap back in.

All three use SQLite's online backup API (``sqlite3.Connection.backup``) with every page in
one step. Copying *from* the live file that way reads one WAL snapshot: writers carry on
and the copy is exactly the database as of one commit. Copying *into* the live file takes
its write lock for the duration of the copy, so other connections see either the old or the
new database, never a mixture, and the WAL stays consistent — unlike replacing the file
under open connections. All functions block: call them in a thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from tradepilot.ops.backup.errors import BackupCorrupted

BUSY_TIMEOUT_SECONDS = 30.0


def database_path(url: str) -> Path:
    """The file behind a ``sqlite+aiosqlite:///path`` URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def copy_database(source: Path, target: Path) -> None:
    """Copy ``source`` into ``target`` (created or overwritten) through the backup API."""
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        dst = sqlite3.connect(target, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    finally:
        src.close()


def integrity_check(path: Path) -> None:
    """``PRAGMA integrity_check`` plus foreign keys; raises ``BackupCorrupted`` with the findings."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            findings = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            fk_violations = connection.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise BackupCorrupted(f"The backed-up database cannot be opened: {exc}.") from None
    if findings != ["ok"]:
        raise BackupCorrupted("The backed-up database fails its integrity check: " + "; ".join(findings[:5]))
    if fk_violations:
        raise BackupCorrupted(f"The backed-up database has {len(fk_violations)} foreign-key violations.")


def alembic_revision(path: Path) -> str | None:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        connection.close()
    return row[0] if row else None


def remove_database_files(path: Path) -> None:
    """Delete a scratch database and its WAL and shared-memory files."""
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                      path.with_name(path.name + "-journal")):
        candidate.unlink(missing_ok=True)
