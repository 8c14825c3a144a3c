"""Use cases of live runs: start, stop (by the user, the panic button, a suspension), read.

Starting checks, under the user row's lock so racing requests cannot overshoot the plan: the
plan's ``running_strategies`` (422 ``running_strategies_limit``), one running run per
configuration (409 ``strategy_already_running``), the account (the user's, open, paper or
live — a live account's orders go to its exchange, market and limit only), the symbols (404
``unknown_symbol``), the parameters (validated again: the catalog may have changed) and, for an
AI-signals run trading the model's own signals, a trained model (503 ``model_not_ready``). The run
starts after the newest bar already closed, so it never trades on history.

Every state change emits a ``strategy_run.*`` event on the user's ``account`` channel in the
same transaction, and mirrors the state on the configuration (``strategy_config.status``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, Unprocessable
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit
from tradepilot.core.pagination import time_keyset_page
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.lifecycle import AccountStop, StopReason, account_stop_hook
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits
from tradepilot.identity.usage import usage_counter
from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals.autotrade import require_models, trades_model
from tradepilot.strategies.models import StrategyConfig
from tradepilot.strategies.runs.models import RunStatus, StrategyRun
from tradepilot.strategies.runs.schemas import RunStart
from tradepilot.strategies.validation import validated_params
from tradepilot.trading import ledger
from tradepilot.trading.deps import account_of
from tradepilot.trading.execution import add, mul
from tradepilot.trading.models import AccountStatus, TradingAccount
from tradepilot.trading.order_models import Fill, Order
from tradepilot.trading.panic_hooks import panic_hook

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.strategies.runs")

EVENT_KIND = "strategies"  # topic user.<id>.strategies: the account channel carries it
STARTED, ORDER, STOPPED, FAILED = ("strategy_run.started", "strategy_run.order", "strategy_run.stopped",
                                   "strategy_run.failed")
PROTECTIVE_EXITS = ("stop_loss", "take_profit", "trailing_stop")
ZERO = Decimal(0)


def run_not_found() -> NotFound:
    return NotFound("Strategy run not found.", code="strategy_run_not_found")


@usage_counter("running_strategies")
async def count_running(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(select(func.count()).select_from(StrategyRun).where(
        StrategyRun.user_id == user_id, StrategyRun.status == RunStatus.RUNNING))
    return int(count or 0)


def run_payload(run: StrategyRun) -> dict[str, Any]:
    """A run as events show it (the API adds the P&L)."""
    return {"id": run.id, "strategy_id": run.strategy_config_id, "account_id": run.account_id,
            "strategy": run.strategy, "symbols": run.symbols, "timeframe": run.timeframe, "status": run.status,
            "stop_reason": run.stop_reason, "error": run.error, "last_bar_at": run.last_bar_at,
            "orders_placed": run.orders_placed, "orders_rejected": run.orders_rejected,
            "started_at": run.started_at, "stopped_at": run.stopped_at}


async def emit_run_event(session: AsyncSession, run: StrategyRun, type_: str, now: datetime,
                         **extra: Any) -> None:
    await emit(session, topic=Topics.user(run.user_id, EVENT_KIND), type=type_, user_id=run.user_id,
               payload={"run": run_payload(run), **extra}, now=now)


# --- starting ---------------------------------------------------------------------------------

async def start_run(runtime: Runtime, session: AsyncSession, config: StrategyConfig, body: RunStart) -> StrategyRun:
    """Start ``config`` live (in the caller's transaction, which commits)."""
    now = runtime.clock.now()
    user = await session.scalar(select(User).where(User.id == config.user_id).with_for_update(key_share=True)
                                .execution_options(populate_existing=True))
    assert user is not None  # authenticated just now
    limits = effective_limits(user.plan, dict(settings_of(user).limits))
    running = await count_running(session, user.id)
    if running >= limits.running_strategies:
        raise Unprocessable(f"Your plan runs {limits.running_strategies} strategies at once; stop one first.",
                            code="running_strategies_limit", extra={"limit": limits.running_strategies})
    if await session.scalar(select(StrategyRun.id).where(StrategyRun.strategy_config_id == config.id,
                                                         StrategyRun.status == RunStatus.RUNNING)) is not None:
        raise Conflict("This strategy is already running; stop it first.", code="strategy_already_running")
    account = await _account(runtime, session, user.id, body.account_id or config.account_id)
    params = validated_params(config.strategy, config.params)
    exits = sorted(k for k in PROTECTIVE_EXITS if params.get(k) is not None)
    if exits:
        raise Unprocessable(f"Protective exits ({', '.join(exits)}) are not supported in live runs yet; "
                            "clear them or use the account's stop-loss on positions.",
                            code="unsupported_in_live_runs", extra={"params": exits})
    symbols = list(body.symbols or config.symbols)
    timeframe = body.timeframe or config.timeframe
    market: MarketService = runtime.services["market"]
    for symbol in symbols:
        market.instrument(symbol)  # 404 unknown_symbol
    if trades_model(config.strategy, params):
        await require_models(runtime, symbols, timeframe, params["horizon"])  # 503 model_not_ready
    run = StrategyRun(user_id=user.id, strategy_config_id=config.id, account_id=account.id,
                      strategy=config.strategy, params=params, symbols=symbols, timeframe=timeframe,
                      status=RunStatus.RUNNING, last_bar_at=await newest_closed_bar(market, symbols, timeframe, now),
                      state={}, orders_placed=0, orders_rejected=0, created_at=now, started_at=now, updated_at=now)
    session.add(run)
    config.status, config.updated_at = RunStatus.RUNNING, now
    await session.flush()
    await emit_run_event(session, run, STARTED, now)
    return run


async def _account(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID,
                   account_id: uuid.UUID | None) -> TradingAccount:
    if account_id is None:
        await runtime.services["trading"].ensure_default_account(session, user_id=user_id)
        account_id = await session.scalar(select(TradingAccount.id).where(
            TradingAccount.user_id == user_id, TradingAccount.is_default.is_(True)))
        assert account_id is not None
    account = await account_of(session, user_id, account_id)
    if account.status != AccountStatus.ACTIVE:
        raise ledger.AccountClosed()
    return account  # paper or live: a live account's orders go to its exchange (runner.py)


async def newest_closed_bar(market: MarketService, symbols: list[str], timeframe: str,
                            now: datetime) -> datetime | None:
    """The open time of the newest bar closed on every symbol (None: no bar yet)."""
    newest: datetime | None = None
    step = timedelta(seconds=TIMEFRAMES[timeframe])
    for symbol in symbols:
        bars = [b for b in await market.read_candles(symbol, timeframe, end=now, limit=3)
                if b.closed and b.open_time + step <= now]
        if not bars:
            return None
        newest = bars[-1].open_time if newest is None else min(newest, bars[-1].open_time)
    return newest


# --- stopping ---------------------------------------------------------------------------------

async def end_run(runtime: Runtime, session: AsyncSession, run_id: uuid.UUID, *, status: str, reason: str,
                  error: str | None = None) -> StrategyRun | None:
    """End a running run (locked, re-read) in the caller's transaction; None when it was not running."""
    run = await session.scalar(select(StrategyRun).where(StrategyRun.id == run_id).with_for_update()
                               .execution_options(populate_existing=True))
    if run is None or run.status != RunStatus.RUNNING:
        return None
    now = runtime.clock.now()
    run.status, run.stop_reason, run.error = status, reason, error
    run.stopped_at = run.updated_at = now
    config = await session.get(StrategyConfig, run.strategy_config_id)
    if config is not None:
        config.status, config.updated_at = status, now
    await emit_run_event(session, run, FAILED if status == RunStatus.FAILED else STOPPED, now)
    return run


async def stop_config(runtime: Runtime, session: AsyncSession, config: StrategyConfig) -> StrategyRun:
    """``POST /api/strategies/{id}/stop``: 409 ``strategy_not_running`` when it is not running."""
    run_id = await session.scalar(select(StrategyRun.id).where(StrategyRun.strategy_config_id == config.id,
                                                               StrategyRun.status == RunStatus.RUNNING))
    run = None if run_id is None else await end_run(runtime, session, run_id, status=RunStatus.STOPPED,
                                                    reason="user")
    if run is None:
        raise Conflict("This strategy is not running.", code="strategy_not_running")
    return run


async def stop_user_runs(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID, *, status: str,
                         reason: str) -> list[StrategyRun]:
    """Stop every running run of the user (the panic button, a suspension)."""
    ids = list(await session.scalars(select(StrategyRun.id).where(StrategyRun.user_id == user_id,
                                                                  StrategyRun.status == RunStatus.RUNNING)
                                     .order_by(StrategyRun.id)))
    stopped = []
    for run_id in ids:
        run = await end_run(runtime, session, run_id, status=status, reason=reason)
        if run is not None:
            stopped.append(run)
    return stopped


@account_stop_hook("strategies.stop_runs")
async def _stop_on_account_stop(stop: AccountStop) -> None:
    """Suspension → ``suspended``; a deletion request or the purge → ``stopped``."""
    status = RunStatus.SUSPENDED if stop.reason == StopReason.SUSPENDED else RunStatus.STOPPED
    await stop_user_runs(stop.runtime, stop.session, stop.user_id, status=status, reason=stop.reason.value)


@panic_hook("strategies.stop_runs")
async def _stop_on_panic(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID) -> int:
    return len(await stop_user_runs(runtime, session, user_id, status=RunStatus.STOPPED, reason="panic"))


# --- reading ----------------------------------------------------------------------------------

async def list_runs(session: AsyncSession, *, user_id: uuid.UUID, config_id: uuid.UUID | None, status: str | None,
                    limit: int, cursor: str | None) -> tuple[list[StrategyRun], str | None]:
    """Newest first."""
    query = select(StrategyRun).where(StrategyRun.user_id == user_id)
    if config_id is not None:
        query = query.where(StrategyRun.strategy_config_id == config_id)
    if status is not None:
        query = query.where(StrategyRun.status == status)
    return await time_keyset_page(session, query, StrategyRun.created_at, StrategyRun.id, limit=limit, cursor=cursor)


async def run_pnl(session: AsyncSession, market: MarketService | None, run: StrategyRun) -> dict[str, Any]:
    """The run's fills summed exactly (in Python: no SQL aggregate over money), marked to the last price."""
    rows = (await session.execute(
        select(Fill.symbol, Fill.side, Fill.quantity, Fill.quote_quantity, Fill.fee, Fill.fee_asset,
               Fill.realised_pnl, Order.quote_asset, Order.base_asset)
        .join(Order, Order.id == Fill.order_id).where(Order.strategy_run_id == run.id))).all()
    realised = fees = ZERO
    held: dict[str, Decimal] = {}
    cost: dict[str, Decimal] = {}
    for symbol, side, quantity, notional, fee, fee_asset, pnl, quote, base in rows:
        realised = add(realised, pnl or ZERO)
        sign = 1 if side == "buy" else -1
        net = quantity - (fee if fee_asset == base else ZERO)
        held[symbol] = add(held.get(symbol, ZERO), net * sign)
        cost[symbol] = add(cost.get(symbol, ZERO), notional * sign)
        if fee_asset == quote:
            fees = add(fees, fee)
    unrealised: Decimal | None = ZERO
    for symbol, quantity in held.items():
        price = ZERO if quantity == 0 else (market.last_price(symbol) if market is not None else None)
        if price is None:
            unrealised = None
            break
        # gross P&L of the symbol's trades: what is held, at the price, minus the net spent on it
        unrealised = add(unrealised, mul(quantity, price) - cost[symbol])  # type: ignore[arg-type]
    if unrealised is not None:
        unrealised = unrealised - realised  # the realised part is reported on its own
    total = None if unrealised is None else realised - fees + unrealised
    return {"realised": realised, "fees": fees, "unrealised": unrealised, "total": total, "fills": len(rows)}
