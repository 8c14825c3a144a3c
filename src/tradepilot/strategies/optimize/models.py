"""The ``strategy_optimization`` table: one optimisation of a strategy configuration.

Like a backtest it is a snapshot (strategy, base parameters, symbols, period, trading
settings and the request: sampler, trials, search space, objective, windows), so editing the
configuration never changes what an old result means. Its job (``job_id``, not a foreign
key: finished jobs are pruned) carries the progress; the row keeps the report (the IS/OOS
table per window, the aggregate, the best parameters) and every window's trials. The Optuna
study itself lives in Optuna's storage (``study.py``) under ``study_prefix``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.strategies import models as _strategy_models  # noqa: F401  (strategy_config, the FK target)
from tradepilot.strategies.models import BacktestStatus

OptimizationStatus = BacktestStatus  # the same lifecycle: queued, running, then succeeded / failed / cancelled


class Optimization(UUIDPrimaryKey, Base):
    __tablename__ = "strategy_optimization"
    __table_args__ = (Index("ix_strategy_optimization_config_created", "strategy_config_id", "created_at", "id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    strategy_config_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("strategy_config.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID]
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # the configuration's; a trial overrides the space's
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(8))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)  # initial_cash, fees, slippage, volume_cap (strings)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # sampler, n_trials, seed, space, objective, windows…
    study_prefix: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=OptimizationStatus.QUEUED)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trials: Mapped[list[Any] | None] = mapped_column(JSON)  # per window, every finished trial
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
