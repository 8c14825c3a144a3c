"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tradepilot.core.db import create_engine
from tradepilot.models_registry import metadata


async def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn):  # type: ignore[no-untyped-def]
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(context, metadata), set(inspect(sync_conn).get_table_names())

            changes, tables = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert changes == [], f"the models and the migrations differ (regenerate the migration): {changes}"
    assert {"trading_account", "trading_balance", "ledger_transaction", "ledger_posting"} <= tables
