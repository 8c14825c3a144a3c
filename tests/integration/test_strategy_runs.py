"""Live runs of strategies (issue 8, §5) on SQLite and PostgreSQL, on the test clock: bars are
written to the candle store as the feed owner flushes them, and the supervisor is woken.

Start → the run's orders appear on the paper account attributed to it, with its events on the
account channel; stop; a restart resumes after the last processed bar; a replayed bar never
trades twice; a crashing strategy fails alone; the plan's running_strategies; the panic button
and a suspension stop the runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select, update

from tests.helpers import bearer, new_user
from tests.integration.admin_support import make_admin
from tests.integration.orders_support import Market, wait_for
from tests.integration.strategies_support import create_strategy
from tests.integration.strategy_runs_support import (
    DOWN,
    HISTORY,
    SMA_FAST,
    T0,
    UP,
    bar,
    run_orders,
    run_row,
    start,
    wait_processed,
    wait_status,
    write_bars,
)
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.strategies.base import EventStrategy, StrategyContext, StrategyParams
from tradepilot.strategies.catalog import strategies
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.strategies.runs.runner import lease_name

BOOK = ([("59990", "5")], [("60000", "5")])


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"strategy_runs_poll_seconds": 0.1})


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def market(runtime) -> Market:  # type: ignore[no-untyped-def]
    m = Market(runtime)
    await m.book(*BOOK)
    await m.trade("60000", "0.1")
    return m


async def running_sma(client: httpx.AsyncClient, runtime, tokens: dict) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    strategy = await create_strategy(client, tokens, SMA_FAST)
    resp = await start(client, tokens, strategy["id"])
    assert resp.status_code == 201, resp.text
    return strategy, resp.json()


async def test_a_run_trades_on_closed_bars_attributed_to_it_and_stops(client: httpx.AsyncClient, runtime,
                                                                      market: Market) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    auth = bearer(tokens)
    await write_bars(runtime, 0, HISTORY)  # minutes 0..9: history, closed before the start
    strategy, run = await running_sma(client, runtime, tokens)
    assert run["status"] == "running" and run["strategy_id"] == strategy["id"]
    assert run["last_bar_at"] == (T0.replace(minute=9)).isoformat().replace("+00:00", "Z")  # never trades history
    assert (await client.get(f"/api/strategies/{strategy['id']}", headers=auth)).json()["status"] == "running"

    await write_bars(runtime, 10, [UP])  # the fast average crosses above: a market buy
    await wait_processed(runtime, run["id"], 10)
    [buy] = await run_orders(runtime, run["id"])
    assert buy.side == "buy" and buy.type == "market" and buy.status == "filled"
    assert buy.client_order_id.startswith(f"sr-{run['id'].replace('-', '')}-")
    assert str(buy.strategy_id) == strategy["id"] and str(buy.account_id) == run["account_id"]
    api_order = (await client.get(f"/api/trading/orders/{buy.id}", headers=auth)).json()
    assert api_order["strategy_run_id"] == run["id"] and api_order["strategy_id"] == strategy["id"]

    await write_bars(runtime, 11, [DOWN])  # crosses below: the whole position is sold
    await wait_processed(runtime, run["id"], 11)
    buy, sell = await run_orders(runtime, run["id"])
    assert sell.side == "sell" and sell.status == "filled" and sell.quantity == buy.filled_quantity

    runs = (await client.get("/api/strategies/runs", headers=auth)).json()["items"]
    [listed] = [r for r in runs if r["id"] == run["id"]]
    assert listed["orders_placed"] == 2 and listed["pnl"]["fills"] == 2
    pnl = listed["pnl"]  # bought at 60000, sold at 59990: the spread and two fees lost, exactly
    assert float(pnl["total"]) < 0 and pnl["unrealised"] == "0"

    performance = await client.get("/api/analytics/performance", headers=auth)
    assert performance.status_code == 200, performance.text
    by_strategy = {g["name"]: g["fills"] for g in performance.json()["by_strategy"]}
    assert by_strategy == {strategy["id"]: 2}  # analytics group the run's fills under its strategy

    stopped = await client.post(f"/api/strategies/{strategy['id']}/stop", headers=auth)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert stopped.json()["stop_reason"] == "user" and stopped.json()["stopped_at"] is not None
    again = await client.post(f"/api/strategies/{strategy['id']}/stop", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "strategy_not_running"
    await write_bars(runtime, 12, [UP, "60900"])  # would cross again: a stopped run does not trade
    supervisor = runtime.services["strategy_runs"]
    await wait_for(lambda: not supervisor.holds(run["id"]), "the stopped run's work to end")
    row = await run_row(runtime, run["id"])
    assert row.last_bar_at == T0.replace(minute=11) and len(await run_orders(runtime, run["id"])) == 2

    async with runtime.db.read() as session:
        types = list(await session.scalars(select(OutboxEvent.type).where(
            OutboxEvent.topic == f"user.{profile['id']}.strategies").order_by(OutboxEvent.seq)))
    assert types == ["strategy_run.started", "strategy_run.order", "strategy_run.order", "strategy_run.stopped"]
    per_strategy = (await client.get(f"/api/strategies/{strategy['id']}/runs", headers=auth)).json()["items"]
    assert [r["id"] for r in per_strategy] == [run["id"]]


async def test_start_refusals(client: httpx.AsyncClient, runtime, market: Market) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens, SMA_FAST)
    unknown = await start(client, tokens, strategy["id"], symbols=["NOPE/USDT"])
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_symbol"
    _, other = await new_user(client)
    theirs = await create_strategy(client, other, SMA_FAST)
    assert (await start(client, tokens, theirs["id"])).status_code == 404  # not yours
    first = await start(client, tokens, strategy["id"])
    assert first.status_code == 201
    twice = await start(client, tokens, strategy["id"])
    assert twice.status_code == 409 and twice.json()["code"] == "strategy_already_running"
    deleting = await client.delete(f"/api/strategies/{strategy['id']}", headers=auth)
    assert deleting.status_code == 409 and deleting.json()["code"] == "strategy_running"
    exits = await create_strategy(client, tokens, {**SMA_FAST, "params": {"fast": 2, "slow": 4, "stop_loss": 0.05}})
    refused = await start(client, tokens, exits["id"])
    assert refused.status_code == 422 and refused.json()["code"] == "unsupported_in_live_runs"


async def test_the_plan_limits_running_strategies(client: httpx.AsyncClient, runtime, market: Market) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    own = await client.put("/api/users/me/settings", json={"limits": {"running_strategies": 1}}, headers=auth)
    assert own.status_code == 200, own.text
    first = await create_strategy(client, tokens, SMA_FAST)
    second = await create_strategy(client, tokens, {**SMA_FAST, "name": "second"})
    assert (await start(client, tokens, first["id"])).status_code == 201
    over = await start(client, tokens, second["id"])
    assert over.status_code == 422 and over.json()["code"] == "running_strategies_limit" and over.json()["limit"] == 1
    limits = (await client.get("/api/users/me/limits", headers=auth)).json()
    assert limits["usage"]["running_strategies"] == 1
    assert (await client.post(f"/api/strategies/{first['id']}/stop", headers=auth)).status_code == 200
    assert (await start(client, tokens, second["id"])).status_code == 201  # a stopped run frees its slot


class Boom(EventStrategy):
    """Raises on its second bar: a strategy bug."""

    name = "test_boom"
    title = "Raises"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def on_start(self, ctx: StrategyContext) -> None:
        self.seen = 0

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        self.seen += 1
        if self.seen == 2:
            raise ZeroDivisionError("division by zero in on_bar")


@pytest.fixture
def boom() -> Any:
    table = strategies()
    table[Boom.name] = Boom  # as an operator's plugin would appear
    yield Boom
    table.pop(Boom.name, None)


async def test_a_crashing_strategy_fails_alone(client: httpx.AsyncClient, runtime, market: Market,
                                               boom: Any) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    await write_bars(runtime, 0, HISTORY)
    crashing = await create_strategy(client, tokens, {**SMA_FAST, "name": "boom", "strategy": "test_boom",
                                                      "params": {}})
    bad = (await start(client, tokens, crashing["id"])).json()
    _, good = await running_sma(client, runtime, tokens)
    await write_bars(runtime, 10, [UP, DOWN])
    failed = await wait_status(runtime, bad["id"], "failed")
    assert failed.stop_reason == "error" and "ZeroDivisionError: division by zero in on_bar" in failed.error
    assert failed.last_bar_at == T0.replace(minute=10)  # the bar that raised was not recorded as processed
    await wait_processed(runtime, good["id"], 11)
    assert [o.side for o in await run_orders(runtime, good["id"])] == ["buy", "sell"]  # the other run went on
    listed = (await client.get(f"/api/strategies/{crashing['id']}/runs", headers=bearer(tokens))).json()["items"]
    assert listed[0]["status"] == "failed" and "ZeroDivisionError" in listed[0]["error"]
    async with runtime.db.read() as session:
        events = list(await session.scalars(select(OutboxEvent).where(
            OutboxEvent.topic == f"user.{profile['id']}.strategies", OutboxEvent.type == "strategy_run.failed")))
    assert [e.payload["run"]["id"] for e in events] == [bad["id"]]


async def test_panic_and_suspension_stop_runs(client: httpx.AsyncClient, runtime, market: Market) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    _, run = await running_sma(client, runtime, tokens)
    panic = await client.post("/api/trading/panic", json={}, headers=bearer(tokens))
    assert panic.status_code == 200, panic.text
    row = await run_row(runtime, run["id"])
    assert row.status == "stopped" and row.stop_reason == "panic"

    profile, victim = await new_user(client)
    _, suspended_run = await running_sma(client, runtime, victim)
    _, admin = await make_admin(client, runtime)
    resp = await client.post(f"/api/admin/users/{profile['id']}/suspend", json={"reason": "fraud"},
                             headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    row = await run_row(runtime, suspended_run["id"])
    assert row.status == "suspended" and row.stop_reason == "suspended"


async def _app(settings: Settings, clock: TestClock) -> AsyncIterator[Any]:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def test_a_restart_resumes_after_the_last_bar_and_a_replay_never_trades_twice(
        settings: Settings, clock: TestClock) -> None:
    first = _app(settings, clock)
    application = await first.__anext__()
    runtime = application.state.runtime
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        market = Market(runtime)
        await market.book(*BOOK)
        await market.trade("60000", "0.1")
        _, tokens = await new_user(client)
        await write_bars(runtime, 0, HISTORY)
        _, run = await running_sma(client, runtime, tokens)
        await write_bars(runtime, 10, [UP])
        await wait_processed(runtime, run["id"], 10)
        store = runtime.services["market"].candles
    await first.aclose()  # the process stops (its lease released); bars keep closing meanwhile
    await asyncio.to_thread(store.write, "BTC/USDT", "1m", [bar(11, DOWN), bar(12, "59700")])

    second = _app(settings, clock)
    application = await second.__anext__()
    runtime = application.state.runtime
    try:
        market = Market(runtime)
        await market.book(*BOOK)
        await market.trade("60000", "0.1")
        runtime.services["strategy_runs"].wake()
        row = await wait_processed(runtime, run["id"], 12)  # resumed: minutes 11 and 12, nothing before
        orders = await run_orders(runtime, run["id"])
        assert [o.side for o in orders] == ["buy", "sell"] and row.orders_placed == 2

        # a crash that lost the progress but not the orders (defence in depth): the bar is replayed
        async with runtime.db.transaction() as session:
            await session.execute(update(StrategyRun).where(StrategyRun.id == orders[0].strategy_run_id)
                                  .values(last_bar_at=T0.replace(minute=9)))
        runtime.services["strategy_runs"].wake()
        row = await wait_processed(runtime, run["id"], 12)
        assert [o.id for o in await run_orders(runtime, run["id"])] == [o.id for o in orders]  # never twice
        assert row.orders_placed == 2 and row.orders_rejected == 0  # the replayed bar's order was known
        assert lease_name(run["id"]) in {name for m in [runtime.services[k] for k in runtime.services
                                                        if k.startswith("lease_manager:")] for name in m.held()}
    finally:
        await second.aclose()


async def test_a_stateful_strategy_resumes_with_its_state_and_hears_its_fills(
        settings: Settings, clock: TestClock) -> None:
    """DCA every 3rd bar: bought on the first bar, restarted after the second; with its state
    restored (bars seen, what it holds, from on_fill) it buys on the fourth bar, not the third."""
    dca = {"name": "DCA", "strategy": "dca", "params": {"interval_bars": 3, "amount": 100}, "symbols": ["BTC/USDT"],
           "timeframe": "1m"}
    first = _app(settings, clock)
    application = await first.__anext__()
    runtime = application.state.runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as client:
        market = Market(runtime)
        await market.book(*BOOK)
        await market.trade("60000", "0.1")
        _, tokens = await new_user(client)
        await write_bars(runtime, 0, HISTORY)
        strategy = await create_strategy(client, tokens, dca)
        run = (await start(client, tokens, strategy["id"])).json()
        await write_bars(runtime, 10, ["60000"])
        await wait_processed(runtime, run["id"], 10)
        await write_bars(runtime, 11, ["60010"])
        row = await wait_processed(runtime, run["id"], 11)
        assert row.state["strategy"]["bars_seen"] == 2
        assert row.state["strategy"]["quantity"] > 0  # the first buy's fill reached on_fill
        store = runtime.services["market"].candles
    await first.aclose()
    await asyncio.to_thread(store.write, "BTC/USDT", "1m", [bar(12, "60020"), bar(13, "60030")])
    second = _app(settings, clock)
    application = await second.__anext__()
    runtime = application.state.runtime
    try:
        market = Market(runtime)
        await market.book(*BOOK)
        await market.trade("60000", "0.1")
        runtime.services["strategy_runs"].wake()
        row = await wait_processed(runtime, run["id"], 13)
        orders = await run_orders(runtime, run["id"])
        minutes = [int(o.client_order_id.split("-")[2]) for o in orders]
        assert [(m - int(T0.timestamp() * 1000)) // 60_000 for m in minutes] == [10, 13]
        assert all(o.side == "buy" and o.status == "filled" for o in orders) and row.state["strategy"]["bars_seen"] == 4
    finally:
        await second.aclose()
