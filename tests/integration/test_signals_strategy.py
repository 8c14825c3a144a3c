"""The AI-signals strategy in a live run on the paper exchange: it buys on its owner's strong
signal (never on a weak one or another user's), through the runner's order path, and sells
when a closed bar reaches the signal's target."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import Market
from tests.integration.signals_support import strategy_runs_app
from tests.integration.strategies_support import create_strategy
from tests.integration.strategy_runs_support import (
    HISTORY,
    SYMBOL,
    run_orders,
    run_row,
    start,
    wait_processed,
    write_bars,
)
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.runtime import Runtime

BOOK = ([("59990", "5")], [("60000", "5")])
AI = {"name": "AI signals", "strategy": "ai_signals", "params": {"min_strength": 0.5, "size": 0.1},
      "symbols": [SYMBOL], "timeframe": "1m"}


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with strategy_runs_app(settings, clock) as application:
        yield application


@pytest.fixture
async def market(runtime: Runtime) -> Market:
    m = Market(runtime)
    await m.book(*BOOK)
    await m.trade("60000", "0.1")
    return m


async def signal(client: httpx.AsyncClient, tokens: dict, **body: object) -> dict:
    answer = await client.post("/api/signals", json={"symbol": SYMBOL, "timeframe": "1m", **body},
                               headers=bearer(tokens))
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_the_ai_signals_strategy_trades_active_signals_on_the_paper_exchange(
        client: httpx.AsyncClient, runtime: Runtime, clock: TestClock, market: Market) -> None:
    _, tokens = await new_user(client)
    _, other = await new_user(client)
    await write_bars(runtime, 0, HISTORY)  # 23:00..23:09, before the run starts
    strategy = await create_strategy(client, tokens, AI)
    run = (await start(client, tokens, strategy["id"])).json()
    assert run["status"] == "running", run

    # 00:00 (the clock): a weak signal, another user's strong one, and nothing happens on bar 00:00
    await signal(client, tokens, side="buy", strength=0.3)
    await signal(client, other, side="buy", strength=0.99)
    await write_bars(runtime, 60, ["60000"])  # the bar at 00:00
    clock.advance(61)
    await wait_processed(runtime, run["id"], 60)
    assert await run_orders(runtime, run["id"]) == []

    # the owner's strong signal with a target: bought at the market on the next bar's decision
    strong = await signal(client, tokens, side="buy", strength=0.9, stop_loss="55000", take_profit="60400",
                          horizon=10)
    await write_bars(runtime, 61, ["60050"])  # the bar at 00:01
    clock.advance(60)
    await wait_processed(runtime, run["id"], 61)
    [buy] = await run_orders(runtime, run["id"])
    assert buy.side == "buy" and buy.type == "market" and buy.status == "filled"
    assert (await run_row(runtime, run["id"])).state["strategy"]["used"] == [strong["id"]]

    await write_bars(runtime, 62, ["60450"])  # closes above the signal's target 60400: sold
    clock.advance(60)
    await wait_processed(runtime, run["id"], 62)
    buy, sell = await run_orders(runtime, run["id"])
    assert sell.side == "sell" and sell.status == "filled" and sell.quantity == buy.filled_quantity

    await write_bars(runtime, 63, ["60100"])  # the used signal is not traded twice
    clock.advance(60)
    await wait_processed(runtime, run["id"], 63)
    assert len(await run_orders(runtime, run["id"])) == 2
