"""Cancel-all and the panic button on LIVE accounts: the real ccxt ``binance`` against the local
fake in tests/fakes/binance_spot.py, on SQLite and PostgreSQL (docs/exchanges.md, docs/orders.md).
Every open platform (``tp-``) order is cancelled on the exchange; a hand-placed one never is."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.binance_spot import FakeBinanceSpot, FakeOrder
from tests.helpers import bearer
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ORDERS, assert_ledger_consistent
from tests.integration.strategy_runs_support import run_row
from tests.integration.test_live_reconciliation import (
    assert_ledger_equals_exchange,
    orders_of,
    reconcile,
    reconciled,
)
from tests.integration.test_live_trading import API_KEY
from tests.integration.test_strategy_runs_live import live_run
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock

D = Decimal
PANIC = "/api/trading/panic"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    # reconciliation on request only (it records the hand-placed order as external)
    return live_settings(database_url, tmp_path, fake, lease_ttl_seconds=5)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


def on_exchange(fake: FakeBinanceSpot, order_id: str) -> FakeOrder:
    cid = f"tp-{uuid.UUID(order_id).hex}"
    return next(o for o in fake.orders if o.client_order_id == cid)


async def two_resting_and_one_by_hand(client: httpx.AsyncClient, fake: FakeBinanceSpot,
                                      ) -> tuple[dict, str, list[dict], FakeOrder, dict]:
    """A reconciled live account with two resting platform limit buys and one hand-placed limit
    buy the platform knows as external."""
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    mine = []
    for price in ("59000", "58000"):
        resp = await client.post(ORDERS, headers=bearer(tokens), json={
            "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
            "price": price})
        assert resp.status_code == 201 and resp.json()["status"] == "new", resp.text
        mine.append(resp.json())
    by_hand = fake.place_by_hand(API_KEY, "BTCUSDT", "buy", "limit", "0.01", "59500")
    run = await reconcile(client, tokens, aid)
    assert [d["kind"] for d in run["differences"]] == ["external_order"]
    [external] = [o for o in await orders_of(client, tokens, aid) if o["source"] == "external"]
    assert (external["status"], external["client_order_id"]) == ("new", by_hand.client_order_id)
    return tokens, aid, mine, by_hand, external


async def assert_only_mine_cancelled(client: httpx.AsyncClient, tokens: dict, aid: str, fake: FakeBinanceSpot,
                                     runtime: Any, mine: list[dict], by_hand: FakeOrder, external: dict) -> None:
    """Both platform orders cancelled on the exchange and in the platform, their reservations
    released; the hand-placed one open on both, never asked about."""
    assert [on_exchange(fake, o["id"]).status for o in mine] == ["CANCELED", "CANCELED"]
    assert by_hand.status == "NEW"
    assert {p["origClientOrderId"] for p in fake.sent("DELETE", "order")} == {
        f"tp-{uuid.UUID(o['id']).hex}" for o in mine}  # never asked to cancel the hand order
    listed = {o["id"]: o for o in await orders_of(client, tokens, aid)}
    assert [(listed[o["id"]]["status"], listed[o["id"]]["reserved"], listed[o["id"]]["cancel_reason"])
            for o in mine] == [("canceled", "0", "canceled_by_user")] * 2
    assert (listed[external["id"]]["status"], listed[external["id"]]["reserved"]) == ("new", "595")
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["USDT"].locked == D("595")  # only the hand order's hold is left
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # the platform and the exchange agree


async def test_cancel_all_cancels_every_platform_order_on_the_exchange_never_an_external_one(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, aid, mine, by_hand, external = await two_resting_and_one_by_hand(client, fake)
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (sorted(body["canceled"]), body["count"], body["not_canceled"]) == (
        sorted(o["id"] for o in mine), 2, [])
    assert len(fake.sent("DELETE", "order")) == 2
    await assert_only_mine_cancelled(client, tokens, aid, fake, runtime, mine, by_hand, external)

    # nothing open of ours is left: a second cancel-all sends nothing
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens))
    assert resp.status_code == 200 and resp.json()["count"] == 0, resp.text
    assert len(fake.sent("DELETE", "order")) == 2 and by_hand.status == "NEW"


async def test_panic_cancels_the_platform_orders_and_sells_what_the_platform_bought(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, aid, mine, by_hand, external = await two_resting_and_one_by_hand(client, fake)
    bought = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"})
    assert bought.status_code == 201 and bought.json()["status"] == "filled", bought.text
    placed = len(fake.sent("POST", "order"))

    resp = await client.post(PANIC, headers=bearer(tokens), json={"close_positions": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (sorted(body["canceled"]), body["canceled_count"], body["not_canceled"]) == (
        sorted(o["id"] for o in mine), 2, [])
    [close] = body["closes"]
    assert (close["account_id"], close["symbol"], close["quantity"], close["status_code"], close["error"]) == (
        aid, "BTC/USDT", "0.01", 201, None)
    assert (close["order"]["side"], close["order"]["type"], close["order"]["status"]) == ("sell", "market", "filled")
    [sold] = fake.sent("POST", "order")[placed:]  # one market sell of the platform's 0.01, by its tp- id
    assert (sold["side"], sold["type"], D(sold["quantity"])) == ("SELL", "MARKET", D("0.01"))
    assert sold["newClientOrderId"] == f"tp-{uuid.UUID(close['order']['id']).hex}"
    await assert_only_mine_cancelled(client, tokens, aid, fake, runtime, mine, by_hand, external)


async def test_an_exchange_error_on_one_cancel_is_reported_and_the_others_still_go(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, aid, mine, by_hand, external = await two_resting_and_one_by_hand(client, fake)
    fake.fail_next("order", 503, {"code": -1001, "msg": "Internal error; unable to process your request."})
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    [failed] = body["not_canceled"]  # the one whose cancel the exchange failed (the first it got)
    [first] = [o for o in mine if o["id"] == failed["order_id"]]
    [second] = [o for o in mine if o["id"] != failed["order_id"]]
    assert (body["canceled"], body["count"], failed["status"]) == ([second["id"]], 1, "new")
    sent = fake.sent("DELETE", "order")
    assert [p["origClientOrderId"] for p in sent] == [f"tp-{uuid.UUID(o['id']).hex}" for o in (first, second)]
    assert failed["error"]["status"] >= 500 and failed["error"]["code"].startswith("exchange_"), failed
    assert (on_exchange(fake, first["id"]).status, on_exchange(fake, second["id"]).status) == ("NEW", "CANCELED")
    listed = {o["id"]: o["status"] for o in await orders_of(client, tokens, aid)}
    assert (listed[first["id"]], listed[second["id"]], listed[external["id"]]) == ("new", "canceled", "new")
    await assert_ledger_consistent(runtime, aid)
    await assert_ledger_equals_exchange(runtime, fake, aid)

    # the panic button, pressed again, gets the one that was left
    resp = await client.post(PANIC, headers=bearer(tokens), json={"account_id": aid})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["canceled"], resp.json()["not_canceled"]) == ([first["id"]], [])
    await assert_only_mine_cancelled(client, tokens, aid, fake, runtime, mine, by_hand, external)


async def test_an_order_the_exchange_had_filled_is_recorded_filled_not_cancelled(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, aid, mine, by_hand, _ = await two_resting_and_one_by_hand(client, fake)
    first, second = mine
    fake.fill_resting(f"tp-{uuid.UUID(first['id']).hex}", "0.01")  # filled there before the button
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["canceled"], body["not_canceled"]) == (
        [second["id"]], [{"order_id": first["id"], "status": "filled", "error": None}])
    filled = (await client.get(f"{ORDERS}/{first['id']}", headers=bearer(tokens))).json()
    assert (filled["status"], filled["filled_quantity"], filled["reserved"]) == ("filled", "0.01", "0")
    assert by_hand.status == "NEW"
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # its fill was recorded once


async def test_panic_stops_a_live_run_before_cancelling_its_account_on_the_exchange(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account, _, run = await live_run(client, runtime, fake)
    aid = account["id"]
    resting = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
        "price": "59000"})
    assert resting.status_code == 201, resting.text
    resp = await client.post(PANIC, headers=bearer(tokens), json={})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["canceled"], resp.json()["not_canceled"]) == ([resting.json()["id"]], [])
    row = await run_row(runtime, run["id"])
    assert (row.status, row.stop_reason) == ("stopped", "panic")
    assert on_exchange(fake, resting.json()["id"]).status == "CANCELED"
    await assert_ledger_equals_exchange(runtime, fake, aid)
