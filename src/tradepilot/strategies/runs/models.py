"""The ``strategy_run`` table: one live run of a strategy configuration on one account.

A run is a snapshot, like a backtest: the strategy, parameters, symbols and timeframe are
copied from the configuration when it starts, so editing the configuration never changes what
a running strategy does. The supervisor's progress lives on the row and is written in the
same fenced transaction as the orders of each bar: ``last_bar_at`` (the open time of the last
bar processed — bars after it are the next ones, so a restart neither skips nor repeats one),
``state`` (what the strategy asked to keep), ``orders_placed``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.strategies import models as _strategy_models  # noqa: F401  (strategy_config, the FK target)


class RunStatus:
    RUNNING = "running"
    STOPPED = "stopped"  # by its user, by the panic button, or at a deletion request
    FAILED = "failed"  # the strategy raised: ``error`` says what
    SUSPENDED = "suspended"  # the account was suspended

    ALL = frozenset({RUNNING, STOPPED, FAILED, SUSPENDED})


class StrategyRun(UUIDPrimaryKey, Base):
    __tablename__ = "strategy_run"
    __table_args__ = (Index("ix_strategy_run_user_created", "user_id", "created_at", "id"),
                      Index("ix_strategy_run_config_created", "strategy_config_id", "created_at", "id"),
                      Index("ix_strategy_run_status", "status"))

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    strategy_config_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("strategy_config.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING)
    stop_reason: Mapped[str | None] = mapped_column(String(32))  # user, panic, suspended, deletion_requested…
    error: Mapped[str | None] = mapped_column(Text)
    last_bar_at: Mapped[datetime | None]  # open time of the last bar processed (None: none yet)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    orders_placed: Mapped[int] = mapped_column(default=0)
    orders_rejected: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
