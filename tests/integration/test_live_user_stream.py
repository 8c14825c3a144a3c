"""Live accounts' user-data stream: ccxt.pro's ``binance.watch_orders`` against the local fake
WebSocket API (tests/fakes/binance_user_stream.py) beside the REST fake, on SQLite and
PostgreSQL (docs/exchanges.md, "User-data streams").

No test here asks for a reconciliation run or moves the test clock to a periodic one: what
arrives, arrives through the stream (or the full run a resubscription asks for)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.binance_spot import FakeBinanceSpot
from tests.fakes.binance_user_stream import FakeBinanceUserStream
from tests.helpers import bearer
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ORDERS
from tests.integration.test_live_reconciliation import (
    assert_ledger_equals_exchange,
    orders_of,
    runs_of,
    wait_for_runs,
)
from tests.integration.test_live_trading import API_KEY, live_account
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
async def stream(fake: FakeBinanceSpot) -> AsyncIterator[FakeBinanceUserStream]:
    server = await FakeBinanceUserStream(fake).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot, stream: FakeBinanceUserStream) -> Settings:
    return live_settings(database_url, tmp_path, fake, live_user_stream_enabled=True,
                         live_exchange_ws_url=stream.ws_url)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.25)


async def streaming(client: httpx.AsyncClient, fake: FakeBinanceSpot, stream: FakeBinanceUserStream,
                    ) -> tuple[dict, dict]:
    """A live account whose stream is subscribed and whose start-up and resync runs are over."""
    tokens, account = await live_account(client, fake)
    runs = await wait_for_runs(client, tokens, account["id"], 2)
    assert sorted(r["trigger"] for r in runs) == ["reconnect", "startup"]
    assert all(r["differences"] == [] for r in runs)
    assert stream.subscriptions == 1
    return tokens, account


async def order_of(client: httpx.AsyncClient, tokens: dict, order_id: str) -> dict:
    resp = await client.get(f"{ORDERS}/{order_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_a_resting_order_filled_on_the_exchange_arrives_through_the_stream(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, stream: FakeBinanceUserStream, runtime: Any) -> None:
    tokens, account = await streaming(client, fake, stream)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.02",
        "price": "59000"})
    assert resp.status_code == 201 and resp.json()["status"] == "new", resp.text
    order = resp.json()
    [on_exchange] = fake.orders

    fake.fill_resting(on_exchange.client_order_id, "0.005")
    partly = await until(lambda: _with_status(client, tokens, order["id"], "partially_filled"), "a partial fill")
    assert (partly["filled_quantity"], partly["average_fill_price"]) == ("0.005", "59000")
    fake.fill_resting(on_exchange.client_order_id, "0.015")
    done = await until(lambda: _with_status(client, tokens, order["id"], "filled"), "the rest")
    assert done["filled_quantity"] == "0.02"
    trades = await client.get("/api/trading/fills", headers=bearer(tokens), params={"order_id": order["id"]})
    assert trades.status_code == 200, trades.text
    assert sorted((f["price"], f["quantity"]) for f in trades.json()["items"]) == [
        ("59000", "0.005"), ("59000", "0.015")]  # each once
    # no run was asked for, none was due: the platform's own fills are no difference either
    assert sorted(r["trigger"] for r in await runs_of(client, tokens, account["id"])) == ["reconnect", "startup"]
    assert [e["x"] for e in stream.pushed] == ["NEW", "TRADE", "TRADE"]
    await assert_ledger_equals_exchange(runtime, fake, account["id"])


async def test_an_order_placed_by_hand_arrives_as_external_and_is_kept_as_a_stream_run(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, stream: FakeBinanceUserStream, runtime: Any) -> None:
    tokens, account = await streaming(client, fake, stream)
    fake.place_by_hand(API_KEY, "BTCUSDT", "BUY", "LIMIT", "0.01", price="59000")  # rests below the book
    runs = await wait_for_runs(client, tokens, account["id"], 3)
    [latest] = [r for r in runs if r["trigger"] == "stream"]
    assert [d["kind"] for d in latest["differences"]] == ["external_order"]
    [external] = await orders_of(client, tokens, account["id"])
    assert (external["source"], external["side"], external["status"]) == ("external", "buy", "new")
    await assert_ledger_equals_exchange(runtime, fake, account["id"])


async def test_what_the_stream_missed_is_found_by_the_run_its_resubscription_asks_for(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, stream: FakeBinanceUserStream, runtime: Any) -> None:
    tokens, account = await streaming(client, fake, stream)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.02",
        "price": "59000"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    await until(lambda: _pushed(stream, "NEW"), "the order's NEW report")
    stream.paused = True  # the stream silently loses what happens now
    fake.fill_resting(fake.orders[0].client_order_id, "0.02")
    await asyncio.sleep(0.3)  # real time for the (lost) push; nothing may arrive meanwhile
    assert (await order_of(client, tokens, order["id"]))["status"] == "new"

    await stream.drop_connections()  # the connection breaks: ccxt.pro resubscribes
    runs = await wait_for_runs(client, tokens, account["id"], 3)
    resync = [r for r in runs if r["trigger"] == "reconnect" and r["differences"]]
    assert [[d["kind"] for d in r["differences"]] for r in resync] == [["fills_recorded"]]
    assert stream.subscriptions == 2
    assert (await order_of(client, tokens, order["id"]))["status"] == "filled"
    await assert_ledger_equals_exchange(runtime, fake, account["id"])


async def _with_status(client: httpx.AsyncClient, tokens: dict, order_id: str, status: str) -> dict | None:
    order = await order_of(client, tokens, order_id)
    return order if order["status"] == status else None


async def _pushed(stream: FakeBinanceUserStream, execution: str) -> bool:
    return any(e["x"] == execution for e in stream.pushed)
