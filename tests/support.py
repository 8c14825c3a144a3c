"""Helpers shared by tests: per-worker databases, settings, and a client with lifespan."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tradepilot.config import Settings
from tradepilot.core import migrate
from tradepilot.models_registry import metadata

PG_ENV = "TRADEPILOT_TEST_DATABASE_URL"
REDIS_ENV = "TRADEPILOT_TEST_REDIS_URL"
REQUIRE_ENV = "TRADEPILOT_TEST_REQUIRE_SERVICES"  # CI sets it: a missing server fails, not skips


def off_loop(func, *args):  # type: ignore[no-untyped-def]
    """Run blocking set-up (Alembic, asyncio.run) in a thread: fixtures may be inside a loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(func, *args).result()


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def services_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false")


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        env="test",
        database_url=database_url,
        secret_key="test-secret-key-0123456789abcdef0123456789",
        argon2_time_cost=1,
        argon2_memory_cost_kib=64,
        argon2_parallelism=1,
        log_json=False,
        redis_url=None,
        redis_prefix=f"tptest:{worker_id()}:{uuid.uuid4().hex[:8]}:",
        outbox_poll_seconds=0.05,
        jobs_poll_seconds=0.05,
        market_backfill_days=0,  # no simulated history unless a test asks for some
        market_feed_owner=False,  # no live feed either: market tests opt in, others publish their own events
        # no notifications from outbox events (they add notification.created events to a user's
        # seq): the notification and alert tests opt in
        notifications_consumer_enabled=False,
        backup_schedule_enabled=False,  # a test clock passing 03:17 UTC must not start a full backup
        live_reconcile_enabled=False,  # no background exchange reads: the reconciliation tests opt in
        ai_direction_train_on_start=False,  # no training job at every start: the AI tests opt in
        ai_direction_retrain_enabled=False,  # nor the daily retraining when a test clock passes 02:41 UTC
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class SqliteTemplate:
    """Migrate once per worker, then copy the file for each test: fresh and fast."""

    def __init__(self, root: Path) -> None:
        self.path = root / "template.db"
        off_loop(migrate.upgrade, f"sqlite+aiosqlite:///{self.path}")

    def fresh(self, directory: Path) -> str:
        target = directory / f"test-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.path, target)
        return f"sqlite+aiosqlite:///{target}"


class PostgresWorkerDatabase:
    """A database per xdist worker, migrated once; tables are emptied before each test."""

    def __init__(self, base_url: str) -> None:
        base, _, name = base_url.rpartition("/")
        self.admin_url = base_url
        # unique per run, so two runs against one server never drop each other's databases
        run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:6] or f"p{os.getpid()}"
        self.name = f"{name}_{run}_{worker_id()}"[:63]
        self.url = f"{base}/{self.name}"
        off_loop(asyncio.run, self._create())
        off_loop(migrate.upgrade, self.url)

    async def _admin(self, sql: str) -> None:
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def _create(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        off_loop(asyncio.run, self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def truncate(self) -> None:
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        finally:
            await engine.dispose()
