"""Live runs of strategies on LIVE (exchange) accounts (issue 8, §5): the real ccxt ``binance``
against the local fake in tests/fakes/binance_spot.py, on SQLite and PostgreSQL, on the test
clock, with bars written to the candle store as the feed owner flushes them.

The run's orders go through the API's live path (pending_new recorded first, sent once as
``tp-<order id hex>``), keep their strategy attribution, are never sent twice for a replayed
bar, are recognised by reconciliation as the platform's own; an exchange's refusal is the
run's rejection and the run goes on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import update

from tests.fakes.binance_spot import FakeBinanceSpot
from tests.helpers import bearer
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import assert_ledger_consistent
from tests.integration.strategies_support import create_strategy
from tests.integration.strategy_runs_support import (
    DOWN,
    HISTORY,
    SMA_FAST,
    T0,
    UP,
    run_orders,
    start,
    wait_processed,
    write_bars,
)
from tests.integration.test_live_reconciliation import reconcile, reconciled
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.strategies.base import EventStrategy, OrderRequest, StrategyContext, StrategyParams
from tradepilot.strategies.catalog import strategies
from tradepilot.strategies.runs.models import StrategyRun
from tradepilot.trading.live.reconciliation import platform_id


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance(timeout_seconds=None) as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    # reconciliation on request only (the periodic run waits for the test clock)
    return live_settings(database_url, tmp_path, fake, strategy_runs_poll_seconds=0.1)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


async def live_run(client: httpx.AsyncClient, runtime, fake: FakeBinanceSpot) -> tuple[dict, dict, dict, dict]:  # type: ignore[no-untyped-def]
    tokens, account = await reconciled(client, fake)
    await write_bars(runtime, 0, HISTORY)
    strategy = await create_strategy(client, tokens, SMA_FAST)
    resp = await start(client, tokens, strategy["id"], account_id=account["id"])
    assert resp.status_code == 201, resp.text
    run = resp.json()
    assert run["account_id"] == account["id"] and run["status"] == "running"
    return tokens, account, strategy, run


class BuyEachBar(EventStrategy):
    """Buys a little on every bar: a replayed bar asks for the same order again."""

    name = "test_buy_each_bar"
    title = "Buys on every bar"
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        ctx.submit(OrderRequest("BTC/USDT", "buy", quantity=0.001))


@pytest.fixture
def buy_each_bar() -> Iterator[type[BuyEachBar]]:
    table = strategies()
    table[BuyEachBar.name] = BuyEachBar  # as an operator's plugin would appear
    yield BuyEachBar
    table.pop(BuyEachBar.name, None)


def sent_orders(fake: FakeBinanceSpot) -> list[dict[str, str]]:
    return fake.sent("POST", "order")


async def test_a_live_run_trades_on_the_exchange_attributed_once_and_reconciliation_knows_its_orders(
        client: httpx.AsyncClient, runtime, fake: FakeBinanceSpot) -> None:  # type: ignore[no-untyped-def]
    tokens, account, strategy, run = await live_run(client, runtime, fake)

    await write_bars(runtime, 10, [UP])  # the fast average crosses above: a market buy, on the exchange
    await wait_processed(runtime, run["id"], 10)
    [buy] = await run_orders(runtime, run["id"])
    assert (buy.side, buy.type, buy.status, buy.venue) == ("buy", "market", "filled", "live:binance")
    assert buy.client_order_id.startswith(f"sr-{run['id'].replace('-', '')}-")  # the run's own id, kept
    assert str(buy.strategy_id) == strategy["id"] and str(buy.account_id) == account["id"]
    [sent] = sent_orders(fake)
    assert sent["newClientOrderId"] == f"tp-{buy.id.hex}" and len(sent["newClientOrderId"]) <= 36
    assert platform_id(sent["newClientOrderId"]) == buy.id  # reconciliation's way to know it
    [there] = fake.orders
    assert there.status == "FILLED" and buy.filled_quantity == there.executed > 0
    assert buy.exchange_order_id == str(there.order_id)
    api_order = (await client.get(f"/api/trading/orders/{buy.id}", headers=bearer(tokens))).json()
    assert api_order["strategy_run_id"] == run["id"] and api_order["strategy_id"] == strategy["id"]
    fills = (await client.get("/api/trading/fills", headers=bearer(tokens),
                              params={"order_id": str(buy.id)})).json()["items"]
    assert fills and {f["price"] for f in fills} <= {"60000", "60010", "60020"}  # the exchange's prices

    await write_bars(runtime, 11, [DOWN])  # crosses below: the whole position is sold there
    await wait_processed(runtime, run["id"], 11)
    buy, sell = await run_orders(runtime, run["id"])
    assert (sell.side, sell.status) == ("sell", "filled") and sell.quantity == buy.filled_quantity
    assert len(sent_orders(fake)) == 2 and str(sell.strategy_run_id) == run["id"]

    # a crash that lost the progress but not the orders: both bars are replayed, nothing is sent again
    async with runtime.db.transaction() as session:
        await session.execute(update(StrategyRun).where(StrategyRun.id == uuid.UUID(run["id"]))
                              .values(last_bar_at=T0.replace(minute=9)))
    runtime.services["strategy_runs"].wake()
    await write_bars(runtime, 12, ["59700"])
    row = await wait_processed(runtime, run["id"], 12)
    assert len(sent_orders(fake)) == 2 and len(fake.orders) == 2  # one order per decision on the exchange
    assert [o.id for o in await run_orders(runtime, run["id"])] == [buy.id, sell.id]
    assert (row.orders_placed, row.orders_rejected, row.status) == (2, 0, "running")

    # the run's orders are the platform's own for reconciliation: nothing external, nothing differs
    result = await reconcile(client, tokens, account["id"])
    assert (result["status"], result["differences"]) == ("ok", []), result
    orders = (await client.get("/api/trading/orders", headers=bearer(tokens),
                               params={"account_id": account["id"]})).json()["items"]
    assert sorted(o["id"] for o in orders) == sorted([str(buy.id), str(sell.id)])
    await assert_ledger_consistent(runtime, account["id"])


async def test_an_exchange_refusal_is_the_runs_rejection_and_the_run_goes_on(
        client: httpx.AsyncClient, runtime, fake: FakeBinanceSpot) -> None:  # type: ignore[no-untyped-def]
    _, account, strategy, run = await live_run(client, runtime, fake)

    fake.fail_next("order", 400, {"code": -2010, "msg": "Account has insufficient balance for requested action."})
    await write_bars(runtime, 10, [UP])
    row = await wait_processed(runtime, run["id"], 10)
    assert (row.status, row.orders_placed, row.orders_rejected) == ("running", 0, 1)
    [refused] = await run_orders(runtime, run["id"])  # recorded before it was sent, then refused
    assert refused.status == "rejected" and refused.reject_code == "insufficient_funds"
    assert str(refused.strategy_id) == strategy["id"] and refused.reserved == 0
    assert fake.orders == []

    await write_bars(runtime, 11, [DOWN, UP, "60900"])  # nothing held to sell; then it crosses up again
    row = await wait_processed(runtime, run["id"], 13)
    orders = await run_orders(runtime, run["id"])
    assert [(o.side, o.status) for o in orders] == [("buy", "rejected"), ("buy", "filled")]
    assert (row.status, row.orders_placed, row.orders_rejected) == ("running", 1, 1)
    assert len(fake.orders) == 1
    await assert_ledger_consistent(runtime, account["id"])


async def test_protective_exits_stay_refused_on_live_accounts(
        client: httpx.AsyncClient, runtime, fake: FakeBinanceSpot) -> None:  # type: ignore[no-untyped-def]
    tokens, account = await reconciled(client, fake)
    await write_bars(runtime, 0, HISTORY)
    strategy = await create_strategy(client, tokens, {**SMA_FAST, "params": {**SMA_FAST["params"],
                                                                            "stop_loss": 0.02}})
    resp = await start(client, tokens, strategy["id"], account_id=account["id"])
    assert resp.status_code == 422 and resp.json()["code"] == "unsupported_in_live_runs", resp.text


async def test_an_unknown_outcome_is_left_to_reconciliation_and_a_lost_step_is_replayed_without_resending(
        client: httpx.AsyncClient, runtime, fake: FakeBinanceSpot, buy_each_bar: Any) -> None:  # type: ignore[no-untyped-def]
    tokens, account = await reconciled(client, fake)
    await write_bars(runtime, 0, HISTORY)
    strategy = await create_strategy(client, tokens, {**SMA_FAST, "name": "each bar", "strategy": buy_each_bar.name,
                                                      "params": {}})
    resp = await start(client, tokens, strategy["id"], account_id=account["id"])
    assert resp.status_code == 201, resp.text
    run = resp.json()
    fake.timeout_seconds = 6.0  # the answer is held back well past the client's timeout (3 s)
    fake.accept_then_timeout()
    fake.hide_fresh_orders = 100  # and the lookups right after find nothing

    await write_bars(runtime, 10, ["60100"])
    row = await wait_processed(runtime, run["id"], 10, timeout=60)
    [pending] = await run_orders(runtime, run["id"])
    assert pending.status == "pending_new" and pending.reserved > 0  # not a refusal: the exchange may have it
    assert str(pending.strategy_id) == strategy["id"]  # attributed from the moment it was recorded
    assert (row.status, row.orders_placed, row.orders_rejected) == ("running", 1, 0)
    assert row.state["orders"] == {"1": str(pending.id)}
    fake.hide_fresh_orders = 0

    # a crash after the order was recorded but before the bar's commit: the step is lost, the
    # strategy asks for the same order again on the replay — found by its sr- id, not resent.
    # The supervisor is stopped first, as a crash stops it: nothing of this process's run may
    # be in flight while its row is rewound.
    supervisor = runtime.services["strategy_runs"]
    await supervisor.stop()
    async with runtime.db.transaction() as session:
        await session.execute(update(StrategyRun).where(StrategyRun.id == uuid.UUID(run["id"]))
                              .values(last_bar_at=T0.replace(minute=9), state={}, orders_placed=0))
    await supervisor.start()
    await write_bars(runtime, 11, ["60100"])
    row = await wait_processed(runtime, run["id"], 11)
    first, second = await run_orders(runtime, run["id"])
    assert first.id == pending.id and second.status == "filled"
    assert len(fake.sent("POST", "order")) == 2 and len(fake.orders) == 2  # one per bar, never twice
    assert (row.orders_placed, row.orders_rejected) == (2, 0)  # the lost step's order counted once, by the replay
    assert row.state["orders"] == {"1": str(pending.id), "2": str(second.id)}

    there = next(o for o in fake.orders if o.client_order_id == f"tp-{pending.id.hex}")
    there.lookups_hidden = 0  # the exchange knows it now: reconciliation adopts it as the platform's
    result = await reconcile(client, tokens, account["id"])
    [difference] = result["differences"]
    assert (difference["kind"], difference["order_id"], difference["status"]) == (
        "pending_adopted", str(pending.id), "filled")
    adopted, _ = await run_orders(runtime, run["id"])
    assert adopted.status == "filled" and adopted.source != "external"
    assert adopted.strategy_run_id == pending.strategy_run_id
    await assert_ledger_consistent(runtime, account["id"])
