"""FastAPI dependencies of strategies: the engine, scopes, ``OwnedStrategy`` and ``OwnedBacktest``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser, require_scope
from tradepilot.identity.principal import AuthUser
from tradepilot.strategies.engine import (
    StrategyEngine,
    backtest_not_found,
    engine_of,
    strategy_not_found,
)
from tradepilot.strategies.models import BacktestRun, StrategyConfig


def get_engine(runtime: RuntimeDep) -> StrategyEngine:
    return engine_of(runtime)


Engine = Annotated[StrategyEngine, Depends(get_engine)]

ReadUser = Annotated[AuthUser, Depends(require_scope("read"))]
TradeUser = Annotated[AuthUser, Depends(require_scope("trade"))]  # every route that changes something


@ownership_dependency
async def owned_strategy(strategy_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> StrategyConfig:
    """The caller's strategy configuration; 404 ``strategy_not_found`` alike for a missing id
    and another user's."""
    row = await db.get(StrategyConfig, strategy_id)
    if row is None or row.user_id != principal.id:
        raise strategy_not_found()
    return row


OwnedStrategy = Annotated[StrategyConfig, Depends(owned_strategy)]


@ownership_dependency
async def owned_backtest(backtest_id: uuid.UUID, strategy: OwnedStrategy, db: DbSession) -> BacktestRun:
    """A backtest of the caller's strategy ``strategy_id``; 404 ``backtest_not_found`` for a
    missing id, another user's, or one of another strategy."""
    run = await db.get(BacktestRun, backtest_id)
    if run is None or run.strategy_config_id != strategy.id or run.user_id != strategy.user_id:
        raise backtest_not_found()
    return run


OwnedBacktest = Annotated[BacktestRun, Depends(owned_backtest)]
