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


def test_the_notify_queue_migration_queues_what_the_old_consumer_had_not_handled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """0019 on a database the cursor-based consumer was reading: the notifying events from its
    cursor's look-back on that have no receipt are queued; handled, older and other ones not."""
    import uuid
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from tradepilot.core import migrate
    from tradepilot.core.types import UTCDateTime

    path = tmp_path / "old.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}", "0018")
    moment = UTCDateTime(timezone=True)
    outbox = sa.table("outbox_event", sa.column("id", sa.String), sa.column("topic", sa.String),
                      sa.column("type", sa.String), sa.column("user_id", sa.Uuid), sa.column("seq", sa.Integer),
                      sa.column("payload", sa.JSON), sa.column("created_at", moment))
    cursor = sa.table("notification_cursor", sa.column("consumer", sa.String), sa.column("position", moment))
    receipts = sa.table("consumed_event", sa.column("consumer", sa.String), sa.column("event_id", sa.String),
                        sa.column("consumed_at", moment))
    position = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    user = uuid.uuid4()
    events = {  # id: (type, created_at, handled)
        "handled": ("fill.created", position - timedelta(minutes=1), True),
        "waiting": ("fill.created", position - timedelta(minutes=1), False),
        "after": ("strategy.stopped", position + timedelta(seconds=5), False),
        "too-old": ("fill.created", position - timedelta(minutes=10), False),
        "no-notify": ("balance.updated", position + timedelta(seconds=5), False),
    }
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.insert(cursor).values(consumer="notifications", position=position))
        for seq, (event_id, (type_, created_at, handled)) in enumerate(events.items(), start=1):
            conn.execute(sa.insert(outbox).values(id=event_id, topic=f"user.{user}.x", type=type_, user_id=user,
                                                  seq=seq, payload={}, created_at=created_at))
            if handled:
                conn.execute(sa.insert(receipts).values(consumer="notifications", event_id=event_id,
                                                        consumed_at=position))
    migrate.upgrade(f"sqlite+aiosqlite:///{path}", "0019")
    with engine.connect() as conn:
        queued = {row.id for row in conn.execute(sa.text("SELECT id FROM outbox_event WHERE notify = 1"))}
        tables = set(sa.inspect(conn).get_table_names())
    assert queued == {"waiting", "after"}
    assert "notification_cursor" not in tables
    migrate.downgrade(f"sqlite+aiosqlite:///{path}", "0018")
    with engine.connect() as conn:
        assert "notification_cursor" in set(sa.inspect(conn).get_table_names())
        assert "notify" not in {c["name"] for c in sa.inspect(conn).get_columns("outbox_event")}
    engine.dispose()
