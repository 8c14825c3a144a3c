"""Bodies of ``POST /api/strategies/{id}/optimize`` and ``GET …/optimizations[/{oid}]``.

``space`` is a free object here: which keys it may hold depends on the strategy, so it is
checked against the strategy's parameter model in ``space.parse_space`` (422 with paths).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from tradepilot.core.schemas import Schema
from tradepilot.strategies.optimize.evaluate import Objective
from tradepilot.strategies.optimize.study import Sampler
from tradepilot.strategies.schemas import BacktestRequest

MAX_WINDOWS = 20


class OptimizeRequest(BacktestRequest):
    """The period and trading settings (as for a backtest) plus what to search and how to judge."""

    sampler: Sampler = Field("tpe", description="grid (every combination), random, or tpe (Bayesian)")
    n_trials: int | None = Field(None, ge=1, le=100_000, description="Trials per window; grid: default and "
                                 "at most the grid's size")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same seed, same trials (for the same worker count)")
    space: dict[str, dict[str, Any]] = Field(description="Per parameter: {low, high, step?, log?} or {choices}",
                                             max_length=20)
    objective: Objective = "sharpe"
    min_trades: int = Field(1, ge=0, le=100_000, description="Trials closing fewer trades are infeasible")
    walk_forward: int = Field(1, ge=1, le=MAX_WINDOWS, description="1: one in-sample / out-of-sample split; "
                              "k: k rolling windows")
    in_sample: float = Field(0.7, ge=0.1, le=0.95, description="In-sample share of each window")


class OptimizationAccepted(Schema):
    optimization_id: uuid.UUID
    job_id: uuid.UUID
    strategy_id: uuid.UUID
    status: str
    n_trials: int = Field(description="Per window")
    estimated_bars: int


class OptimizationOut(Schema):
    id: uuid.UUID
    strategy_id: uuid.UUID
    job_id: uuid.UUID
    status: str = Field(description="queued, running, succeeded, failed, cancelled")
    progress: float | None
    progress_message: str | None
    error: str | None
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str
    start: datetime
    end: datetime
    settings: dict[str, Any]
    request: dict[str, Any]
    report: dict[str, Any] | None = Field(description="Per window: in-sample and out-of-sample metrics side by "
                                          "side; the aggregate; best_params")
    trials: list[list[dict[str, Any]]] | None = Field(None, description="Per window, every trial (with "
                                                      "?trials=true)")
    created_at: datetime
    finished_at: datetime | None
