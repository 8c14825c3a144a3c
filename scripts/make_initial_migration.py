"""Regenerate the initial migration from the models (only while nothing has been released).

Usage: python scripts/make_initial_migration.py
Once a release exists, add new revisions with `alembic revision --autogenerate` instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from tradepilot.core.migrate import MIGRATIONS_DIR, alembic_config

VERSIONS = MIGRATIONS_DIR / "versions"


def main() -> None:
    for old in VERSIONS.glob("*_initial_schema.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite+aiosqlite:///{Path(tmp) / 'empty.db'}")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    for path in VERSIONS.glob("*_initial_schema.py"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
