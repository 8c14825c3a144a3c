"""Per-user export: everything of one user, as JSON (``GET /api/users/me/export``).

The plan is declarative and checked against the models registry: every table that holds a
user's data — a ``user_id`` column, or a foreign key to the user, their trading accounts,
sessions or orders — must be either in ``EXPORTED`` (with how its rows are found and which
columns are left out) or in ``NOT_EXPORTED`` (with the reason). ``uncovered_tables`` lists
the ones in neither, and a test fails when a new table is added without a decision.

Secrets never leave: password and token hashes, the encrypted TOTP secret, API-key hashes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.money import to_plain_string

FORMAT_VERSION = 1
OWNER_TABLES = ("user_account", "trading_account", "user_session", "trading_order")


@dataclass(frozen=True)
class Rows:
    """How a table's rows of one user are found: ``column`` equals the user's id (``by="user"``),
    or is one of their trading accounts' / orders' ids."""

    column: str
    by: str = "user"  # "user" | "account" | "order"
    omit: frozenset[str] = frozenset()


EXPORTED: dict[str, Rows] = {
    "user_account": Rows("id", omit=frozenset({"password_hash", "totp_secret_encrypted", "totp_last_counter"})),
    "user_session": Rows("user_id"),
    "api_key": Rows("user_id", omit=frozenset({"secret_hash"})),
    "security_event": Rows("user_id"),
    "known_login_address": Rows("user_id"),
    "trading_account": Rows("user_id", omit=frozenset({"credentials_encrypted"})),  # never exported in clear or not
    "trading_balance": Rows("account_id", by="account"),
    "ledger_transaction": Rows("account_id", by="account"),
    "ledger_posting": Rows("account_id", by="account"),
    "trading_order": Rows("user_id"),
    "trading_order_event": Rows("order_id", by="order"),
    "trading_fill": Rows("user_id"),
    "trading_position": Rows("user_id"),
    "trading_position_exit": Rows("user_id"),
    "equity_day": Rows("user_id"),
    "equity_intraday": Rows("user_id"),
    "outbox_event": Rows("user_id"),
    "job": Rows("user_id", omit=frozenset({"payload", "worker_id"})),
    "alert": Rows("user_id"),
    "alert_trigger": Rows("user_id"),
    "notification": Rows("user_id"),
    "notification_settings": Rows("user_id"),
    "notification_target": Rows("user_id", omit=frozenset({"address_encrypted", "address_hash"})),  # credentials
    "strategy_config": Rows("user_id"),
    "strategy_backtest": Rows("user_id", omit=frozenset({"report_path"})),  # a server path; the report is via the API
    "strategy_run": Rows("user_id"),
    "strategy_optimization": Rows("user_id"),
    "ai_sentiment_text": Rows("user_id"),
    "ai_active_model": Rows("user_id"),
    "ai_llm_call": Rows("user_id"),
    "live_reconciliation_run": Rows("user_id"),
    "signal": Rows("user_id"),
    "signal_webhook": Rows("user_id", omit=frozenset({"secret_hash"})),  # a credential's hash
}

NOT_EXPORTED: dict[str, str] = {
    "refresh_token": "holds only hashes of session tokens (the sessions themselves are exported)",
    "one_time_token": "holds only hashes of single-use emailed tokens",
    "two_factor_recovery_code": "holds only hashes of recovery codes",
    "two_factor_email_code": "holds only hashes of emailed login codes",
    "user_event_seq": "an internal counter of the user's event numbers (the events are exported)",
    "telegram_link_code": "holds only the hash of a one-time, 15-minute chat linking code",
    "ai_call_day": "a counter of AI calls per UTC day for the plan's quota (the calls are exported in ai_llm_call)",
    "live_trade_cursor": "reconciliation's bookmark in the exchange's trade list (the fills are exported)",
}


def user_tables(metadata: MetaData) -> set[str]:
    """Tables holding some user's data: a ``user_id`` column or a key to an owner table."""
    found = set()
    for table in metadata.tables.values():
        if "user_id" in table.columns or table.name in OWNER_TABLES or any(fk.column.table.name in OWNER_TABLES for fk in table.foreign_keys):
            found.add(table.name)
    return found


def uncovered_tables(metadata: MetaData) -> set[str]:
    return user_tables(metadata) - set(EXPORTED) - set(NOT_EXPORTED)


async def export_user(session: AsyncSession, metadata: MetaData, *, user_id: uuid.UUID,
                      exported_at: datetime) -> dict[str, Any]:
    """Every exported table's rows of ``user_id``, as JSON-able dicts, in a consistent read."""
    tables = {name: metadata.tables[name] for name in EXPORTED if name in metadata.tables}
    accounts, orders = tables["trading_account"], tables["trading_order"]
    keys: dict[str, Any] = {
        "user": [user_id],
        "account": select(accounts.c.id).where(accounts.c.user_id == user_id).scalar_subquery(),
        "order": select(orders.c.id).where(orders.c.user_id == user_id).scalar_subquery(),
    }
    data: dict[str, list[dict[str, Any]]] = {}
    for name, table in sorted(tables.items()):
        data[name] = await _rows(session, table, EXPORTED[name], keys[EXPORTED[name].by])
    return {"format_version": FORMAT_VERSION, "user_id": str(user_id), "exported_at": _json(exported_at),
            "tables": data, "not_exported": dict(sorted(NOT_EXPORTED.items()))}


async def _rows(session: AsyncSession, table: Table, plan: Rows, ids: Any) -> list[dict[str, Any]]:
    columns = [c for c in table.columns if c.name not in plan.omit]
    result = await session.execute(select(*columns).where(table.c[plan.column].in_(ids))
                                   .order_by(*table.primary_key.columns))
    return [{c.name: _json(value) for c, value in zip(columns, row, strict=True)} for row in result]


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return to_plain_string(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value
