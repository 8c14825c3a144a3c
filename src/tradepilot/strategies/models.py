"""Tables of the strategy engine: users' strategy configurations and their backtest runs.

A configuration (``strategy_config``) names a strategy of the catalog (a built-in, a plugin,
or ``rules`` with a rule document as its parameters) with *validated* parameters, the symbols
and timeframe it trades, and optionally the account a later live run will use.

A backtest run (``strategy_backtest``) is a snapshot: the strategy, parameters, symbols,
period and trading settings are copied from the configuration when it is enqueued, so
editing the configuration afterwards never changes what an old result means. The job of the
core (``job_id``) carries the progress; the run keeps the outcome (summary, report folder).
``job_id`` is not a foreign key: finished jobs are pruned after ``jobs_retention_days`` while
results stay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class StrategyStatus:
    """A configuration's state: ``idle`` until its first live run, then its latest run's
    (``strategies/runs``: running, stopped, failed, suspended)."""

    IDLE = "idle"
    RUNNING = "running"


class BacktestStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


class StrategyConfig(UUIDPrimaryKey, Base):
    __tablename__ = "strategy_config"
    __table_args__ = (Index("ix_strategy_config_user_created", "user_id", "created_at", "id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    strategy: Mapped[str] = mapped_column(String(64))  # a catalog name; "rules" for a rule document
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # validated, defaults filled in
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(8))
    account_id: Mapped[uuid.UUID | None]  # for live runs (§5); checked to be the user's when set
    status: Mapped[str] = mapped_column(String(16), default=StrategyStatus.IDLE)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BacktestRun(UUIDPrimaryKey, Base):
    """One backtest. ``strategy_config_id`` is NULL for an inline run (``POST /api/ai/backtest-strategy``)."""

    __tablename__ = "strategy_backtest"
    __table_args__ = (Index("ix_strategy_backtest_config_created", "strategy_config_id", "created_at", "id"),
                      Index("ix_strategy_backtest_user_created", "user_id", "created_at", "id"))

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    strategy_config_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("strategy_config.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID]
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(8))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # initial_cash, fees, slippage, volume_cap (strings)
    status: Mapped[str] = mapped_column(String(16), default=BacktestStatus.QUEUED)
    bars: Mapped[int | None]  # bars simulated (per symbol), once known
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # BacktestResult.summary()
    error: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(String(500))  # relative to data_dir
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
