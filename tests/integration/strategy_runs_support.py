"""Helpers of the live-run tests: candles written to the store (as the feed owner flushes
them), a strategy configuration that crosses on a few bars, and waiting for the runner."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from tests.helpers import bearer
from tests.integration.orders_support import wait_for
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.trading.order_models import Order

SYMBOL = "BTC/USDT"
T0 = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)  # the test clock starts at 2026-01-01T00:00Z
# SMA 2/4 on these closes: the fast average stays below the slow one (no signal yet)
HISTORY = ["60500", "60450", "60400", "60350", "60300", "60250", "60200", "60150", "60100", "60050"]
UP, DOWN = "60300", "59800"  # after HISTORY: UP crosses above (a buy), then DOWN crosses below (a sell)
SMA_FAST = {"name": "SMA 2/4 live", "strategy": "sma_cross", "params": {"fast": 2, "slow": 4, "size": 0.1},
            "symbols": [SYMBOL], "timeframe": "1m"}


def bar(minute: int, close: str, symbol: str = SYMBOL) -> Bar:
    price = Decimal(close)
    return Bar(symbol=symbol, timeframe="1m", open_time=T0 + timedelta(minutes=minute), open=price,
               high=price + 5, low=price - 5, close=price, volume=Decimal(3))


async def write_bars(runtime: Runtime, first_minute: int, closes: list[str], symbol: str = SYMBOL) -> None:
    """Bars from minute ``first_minute`` after T0, into the candle store the runner reads."""
    store = runtime.services["market"].candles
    bars = [bar(first_minute + i, c, symbol) for i, c in enumerate(closes)]
    await asyncio.to_thread(store.write, symbol, "1m", bars)
    supervisor = runtime.services.get("strategy_runs")
    if supervisor is not None:
        supervisor.wake()


async def start(client: httpx.AsyncClient, tokens: dict, strategy_id: str, **body: Any) -> httpx.Response:
    return await client.post(f"/api/strategies/{strategy_id}/start", json=body or None, headers=bearer(tokens))


async def run_row(runtime: Runtime, run_id: str) -> StrategyRun:
    async with runtime.db.read() as session:
        row = await session.scalar(select(StrategyRun).where(StrategyRun.id == uuid.UUID(run_id)))
        assert row is not None
        session.expunge(row)
        return row


async def run_orders(runtime: Runtime, run_id: str) -> list[Order]:
    async with runtime.db.read() as session:
        rows = list(await session.scalars(select(Order).where(Order.strategy_run_id == uuid.UUID(run_id))
                                          .order_by(Order.client_order_id)))  # bar time, then n
        session.expunge_all()
        return rows


async def wait_processed(runtime: Runtime, run_id: str, minute: int, timeout: float = 30.0) -> StrategyRun:
    """Until the run's last processed bar is the one at ``minute`` after T0."""
    target = T0 + timedelta(minutes=minute)

    async def done() -> bool:
        row = await run_row(runtime, run_id)
        return row.last_bar_at is not None and row.last_bar_at >= target

    await wait_for(done, f"the run to process the bar at {target:%H:%M}", timeout=timeout)
    return await run_row(runtime, run_id)


async def wait_status(runtime: Runtime, run_id: str, status: str, timeout: float = 30.0) -> StrategyRun:
    async def done() -> bool:
        return (await run_row(runtime, run_id)).status == status

    await wait_for(done, f"the run to be {status}", timeout=timeout)
    return await run_row(runtime, run_id)
