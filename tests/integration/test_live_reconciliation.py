"""Reconciliation of live accounts: the real ccxt ``binance`` against the local fake in
tests/fakes/binance_spot.py, under the account's lease, on SQLite and PostgreSQL
(docs/exchanges.md, "Reconciliation")."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.fakes.binance_spot import FakeBinanceSpot
from tests.helpers import bearer
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ACCOUNTS, ORDERS, assert_ledger_consistent
from tests.integration.test_live_trading import API_KEY, live_account
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.trading.live.reconciliation_models import ReconciliationRun
from tradepilot.trading.live.reconciliation_owner import lease_name, supervisor

D = Decimal


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    # periodic runs only when the test clock says so; the owner looks at the clock every 50 ms
    return live_settings(database_url, tmp_path, fake, lease_ttl_seconds=5)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


async def runs_of(client: httpx.AsyncClient, tokens: dict, account_id: str) -> list[dict]:
    resp = await client.get(f"{ACCOUNTS}/{account_id}/reconciliation", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]  # type: ignore[no-any-return]


async def wait_for_runs(client: httpx.AsyncClient, tokens: dict, account_id: str, count: int,
                        timeout: float = 60) -> list[dict]:
    """Until the account has ``count`` runs (the start-up run comes from the lease owner's task)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = await runs_of(client, tokens, account_id)
        if len(runs) >= count:
            return runs
        assert time.monotonic() < deadline, f"only {len(runs)} runs: {runs}"
        await asyncio.sleep(0.05)


async def reconciled(client: httpx.AsyncClient, fake: FakeBinanceSpot, tokens: dict | None = None,
                     ) -> tuple[dict, dict]:
    """A live account whose start-up run is over (so the test's own runs are the next ones)."""
    tokens, account = await live_account(client, fake)
    [startup] = await wait_for_runs(client, tokens, account["id"], 1)
    assert (startup["trigger"], startup["status"], startup["differences"]) == ("startup", "ok", [])
    return tokens, account


async def reconcile(client: httpx.AsyncClient, tokens: dict, account_id: str) -> dict:
    resp = await client.post(f"{ACCOUNTS}/{account_id}/reconcile", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def orders_of(client: httpx.AsyncClient, tokens: dict, account_id: str) -> list[dict]:
    resp = await client.get(ORDERS, headers=bearer(tokens), params={"account_id": account_id})
    assert resp.status_code == 200, resp.text
    return resp.json()["items"]  # type: ignore[no-any-return]


async def assert_ledger_equals_exchange(runtime: Any, fake: FakeBinanceSpot, account_id: str) -> None:
    rows = await assert_ledger_consistent(runtime, account_id)
    ours = {asset: row.free + row.locked for asset, row in rows.items() if row.free + row.locked}
    theirs = {asset: v for asset, v in fake.accounts[API_KEY].balances.items() if v}
    assert ours == theirs


# --- (c) a resting platform order filled later on the exchange ----------------------------------

async def test_resting_order_filled_later_is_picked_up_with_its_fills(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.02",
        "price": "59000"})
    assert resp.status_code == 201 and resp.json()["status"] == "new", resp.text
    order = resp.json()
    [on_exchange] = fake.orders
    assert await reconcile(client, tokens, account["id"]) == {**(await runs_of(client, tokens, account["id"]))[0]}
    assert (await runs_of(client, tokens, account["id"]))[0]["differences"] == []  # resting there too: agreed

    fake.fill_resting(on_exchange.client_order_id, "0.005")  # the market traded through it
    run = await reconcile(client, tokens, account["id"])
    assert (run["trigger"], run["status"]) == ("manual", "differences")
    [difference] = run["differences"]
    assert (difference["kind"], difference["order_id"], difference["status"]) == (
        "fills_recorded", order["id"], "partially_filled")
    assert [(f["price"], f["quantity"]) for f in difference["fills"]] == [("59000", "0.005")]
    now = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["filled_quantity"], now["source"]) == ("partially_filled", "0.005", "platform")
    [fill] = (await client.get("/api/trading/fills", headers=bearer(tokens),
                               params={"order_id": order["id"]})).json()["items"]
    assert (fill["price"], fill["quantity"], fill["fee"], fill["liquidity"], fill["source"]) == (
        "59000", "0.005", "0.295", "maker", "platform")
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": account["id"]})).json()["items"]
    assert [(p["symbol"], p["quantity"]) for p in positions] == [("BTC/USDT", "0.005")]
    await assert_ledger_consistent(runtime, account["id"])

    again = await reconcile(client, tokens, account["id"])  # nothing new: the same fill is not recorded twice
    assert (again["status"], again["differences"]) == ("ok", [])
    fake.fill_resting(on_exchange.client_order_id, "0.015")
    run = await reconcile(client, tokens, account["id"])
    assert [(d["kind"], d["status"]) for d in run["differences"]] == [("fills_recorded", "filled")]
    now = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["filled_quantity"], now["reserved"]) == ("filled", "0.02", "0")
    await assert_ledger_equals_exchange(runtime, fake, account["id"])
    events = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in events] == ["received", "accepted", "fill", "fill"]


# --- (b) an order placed by hand on the exchange ----------------------------------------------------

async def test_hand_placed_orders_are_external_move_balances_and_are_never_cancelled(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    mine = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"})
    assert mine.status_code == 201 and mine.json()["status"] == "filled", mine.text
    assert (await reconcile(client, tokens, aid))["differences"] == []  # the platform's own trade: agreed

    resting = fake.place_by_hand(API_KEY, "BTCUSDT", "buy", "limit", "0.01", "59500")  # by hand, on the site
    taken = fake.place_by_hand(API_KEY, "BTCUSDT", "buy", "market", "0.01")
    assert taken.status == "FILLED" and resting.status == "NEW"
    run = await reconcile(client, tokens, aid)
    kinds = sorted((d["kind"], d["exchange_order_id"]) for d in run["differences"])
    assert kinds == sorted([("external_order", str(resting.order_id)), ("external_order", str(taken.order_id))])
    assert all(d["kind"] != "balance_changed" for d in run["differences"])  # the fills explain the balances

    orders = {o["client_order_id"]: o for o in await orders_of(client, tokens, aid)}
    hand_open, hand_filled = orders[resting.client_order_id], orders[taken.client_order_id]
    assert (hand_open["source"], hand_open["status"], hand_open["price"], hand_open["reserved"]) == (
        "external", "new", "59500", "595")
    assert (hand_filled["source"], hand_filled["status"], hand_filled["filled_quantity"]) == (
        "external", "filled", "0.01")
    assert orders[mine.json()["client_order_id"]]["source"] == "platform"
    fills = (await client.get("/api/trading/fills", headers=bearer(tokens), params={"account_id": aid})).json()
    assert sorted((f["source"], f["order_id"] == hand_filled["id"]) for f in fills["items"]) == [
        ("external", True), ("platform", False)]
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": aid})).json()["items"]
    assert [(p["symbol"], p["quantity"]) for p in positions] == [("BTC/USDT", "0.02")]  # 0.01 mine + 0.01 by hand
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # recorded once, not again

    # the hand order fills later: its fill is external too, and moves the position
    fake.fill_resting(resting.client_order_id, "0.004")
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["status"]) for d in run["differences"]] == [("external_fills", "partially_filled")]
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": aid})).json()["items"]
    assert [p["quantity"] for p in positions] == ["0.024"]
    await assert_ledger_equals_exchange(runtime, fake, aid)

    # never cancelled or closed by the platform: cancel-all, the panic button, a direct cancel
    sent = len(fake.sent("DELETE", "order")), len(fake.sent("POST", "order"))
    resp = await client.delete(f"{ORDERS}/bulk", headers=bearer(tokens), params={"account_id": aid})
    assert resp.status_code == 200 and resp.json()["count"] == 0, resp.text
    resp = await client.post("/api/trading/panic", headers=bearer(tokens),
                             json={"account_id": aid, "close_positions": True})
    assert resp.status_code == 200 and resp.json()["canceled_count"] == 0, resp.text
    [close] = resp.json()["closes"]  # only the platform's own 0.01 is sold, not the 0.014 bought by hand
    assert (close["quantity"], close["status_code"], close["order"]["status"]) == ("0.01", 201, "filled")
    resp = await client.delete(f"{ORDERS}/{hand_open['id']}", headers=bearer(tokens))
    assert resp.status_code == 422 and resp.json()["code"] == "external_order", resp.text
    assert (len(fake.sent("DELETE", "order")), len(fake.sent("POST", "order"))) == (sent[0], sent[1] + 1)
    assert resting.status == "PARTIALLY_FILLED"
    assert (await client.get(f"{ORDERS}/{hand_open['id']}", headers=bearer(tokens))).json()["status"] == \
        "partially_filled"

    # cancelled by hand on the site: the platform follows, and releases what it held for it
    fake.cancel_by_hand(resting.client_order_id)
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["status"]) for d in run["differences"]] == [("external_fills", "canceled")]
    await assert_ledger_equals_exchange(runtime, fake, aid)
    rows = await assert_ledger_consistent(runtime, aid)
    assert rows["USDT"].locked == 0


# --- (d) balances changed outside any order; differences listed and evented --------------------------

async def test_balance_changes_are_recorded_listed_and_sent_to_the_account_channel(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    fake.accounts[API_KEY].balances["USDT"] += D("250.5")  # a deposit on the exchange
    fake.accounts[API_KEY].balances["BNB"] -= D("0.4")  # a withdrawal
    fake.accounts[API_KEY].balances["ETH"] = D("2")  # a transfer in
    run = await reconcile(client, tokens, aid)
    changes = {d["asset"]: (d["platform"], d["exchange"], d["applied"]) for d in run["differences"]
               if d["kind"] == "balance_changed"}
    assert changes == {"USDT": ("10000", "10250.5", "250.5"), "BNB": ("1", "0.6", "-0.4"), "ETH": ("0", "2", "2")}
    await assert_ledger_equals_exchange(runtime, fake, aid)
    detail = (await client.get(f"{ACCOUNTS}/{aid}", headers=bearer(tokens))).json()
    assert {b["asset"]: b["free"] for b in detail["balances"]} == {"USDT": "10250.5", "BNB": "0.6", "ETH": "2"}

    runs = await runs_of(client, tokens, aid)
    assert [r["trigger"] for r in runs] == ["manual", "startup"] and runs[0] == run
    page = (await client.get(f"{ACCOUNTS}/{aid}/reconciliation", headers=bearer(tokens),
                             params={"limit": 1})).json()
    assert [r["id"] for r in page["items"]] == [run["id"]] and page["next_cursor"]
    rest = (await client.get(f"{ACCOUNTS}/{aid}/reconciliation", headers=bearer(tokens),
                             params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [r["trigger"] for r in rest["items"]] == ["startup"] and rest["next_cursor"] is None
    # the user's account channel gets the run (through the outbox, like every account event)
    async with runtime.db.session() as session:
        events = list(await session.scalars(select(OutboxEvent).where(OutboxEvent.type == "reconciliation.completed")))
    [event] = events
    assert event.topic.endswith(".reconciliation") and event.payload["run"]["id"] == run["id"]
    assert event.payload["account_id"] == aid
    # the ledger says where the money came from
    ledger = (await client.get(f"{ACCOUNTS}/{aid}/ledger", headers=bearer(tokens))).json()["items"]
    assert {t["kind"] for t in ledger[:3]} == {"deposit", "withdrawal"}

    # another user cannot see or trigger it; a paper account has nothing to reconcile
    from tests.helpers import new_user

    _, other = await new_user(client)
    for method, path in (("GET", "reconciliation"), ("POST", "reconcile")):
        resp = await client.request(method, f"{ACCOUNTS}/{aid}/{path}", headers=bearer(other))
        assert resp.status_code == 404 and resp.json()["code"] == "account_not_found"
    paper = (await client.get(ACCOUNTS, headers=bearer(tokens))).json()["items"]
    paper_id = next(a["id"] for a in paper if a["kind"] == "paper")
    resp = await client.post(f"{ACCOUNTS}/{paper_id}/reconcile", headers=bearer(tokens))
    assert resp.status_code == 422 and resp.json()["code"] == "live_account_required"


async def test_a_run_with_differences_reaches_the_users_account_websocket_channel(
        client: httpx.AsyncClient, app: Any, fake: FakeBinanceSpot) -> None:
    from tests.integration.ws_helpers import authed, uvicorn_server

    tokens, account = await reconciled(client, fake)
    async with uvicorn_server(app) as address, contextlib.AsyncExitStack() as stack:
        ws = await authed(address, tokens["access_token"], stack)
        await ws.subscribe("account")
        await ws.expect_type("subscribed", channel="account")
        fake.accounts[API_KEY].balances["USDT"] += D(7)
        run = await reconcile(client, tokens, account["id"])
        frame = await ws.expect(lambda m: m.get("type") == "event" and m.get("channel") == "account"
                                and m["data"]["type"] == "reconciliation.completed", timeout=30)
    assert frame["data"]["kind"] == "reconciliation"
    assert frame["data"]["payload"]["run"]["id"] == run["id"]
    assert [d["kind"] for d in frame["data"]["payload"]["run"]["differences"]] == ["balance_changed"]


# --- pending orders: adopted when the exchange has them, finalised when it never saw them ------------

async def test_pending_order_whose_answer_was_lost_is_adopted_without_a_second_order(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    """The in-process half of "killed after sending": the answer never reaches the platform (the
    e2e test kills a real server there)."""
    tokens, account = await reconciled(client, fake)
    fake.accept_then_timeout()
    fake.hide_fresh_orders = 100  # the lookups right after find nothing: the order stays pending_new
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.05"})
    assert resp.status_code == 202 and resp.json()["status"] == "pending_new", resp.text
    order = resp.json()
    [on_exchange] = fake.orders
    on_exchange.lookups_hidden = 0  # the exchange knows it now
    run = await reconcile(client, tokens, account["id"])
    [difference] = run["differences"]
    assert (difference["kind"], difference["order_id"], difference["status"]) == (
        "pending_adopted", order["id"], "filled")
    now = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["filled_quantity"], now["fees"], now["reserved"]) == ("filled", "0.05", "3.0001", "0")
    assert len(fake.sent("POST", "order")) == 1 and len(fake.orders) == 1  # never sent again
    await assert_ledger_equals_exchange(runtime, fake, account["id"])
    assert (await reconcile(client, tokens, account["id"]))["differences"] == []


async def test_pending_order_the_exchange_never_saw_is_rejected_after_the_grace_age(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any, clock: TestClock) -> None:
    tokens, account = await reconciled(client, fake)
    fake.fail_next("order", 504, {"code": -1007, "msg": "Timeout waiting for response from backend server."})
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account["id"], "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.01",
        "price": "59000"})
    assert resp.status_code == 202 and resp.json()["status"] == "pending_new", resp.text
    order = resp.json()
    assert fake.orders == []  # the gateway failed before the engine took it
    run = await reconcile(client, tokens, account["id"])  # too young to tell from "not visible yet"
    assert run["differences"] == []
    assert (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()["status"] == "pending_new"
    before = len(await runs_of(client, tokens, account["id"]))
    clock.advance(61)  # past the grace age (and the lease's TTL: it may be taken again, with a start-up run)
    resp = await client.post(f"{ACCOUNTS}/{account['id']}/reconcile", headers=bearer(tokens))
    assert resp.status_code in (200, 202), resp.text  # 202: passed on to the holder while it re-took the lease
    runs = await wait_for_runs(client, tokens, account["id"], before + 1)
    [difference] = [d for r in runs[:len(runs) - before] for d in r["differences"]]
    assert (difference["kind"], difference["order_id"]) == ("pending_not_found", order["id"])
    now = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["reject_code"], now["reserved"]) == ("rejected", "not_found_on_exchange", "0")
    assert len(fake.sent("POST", "order")) == 1  # never resent
    await assert_ledger_equals_exchange(runtime, fake, account["id"])


async def stored_runs(runtime: Any, account_id: str, count: int, timeout: float = 60) -> list[ReconciliationRun]:
    """The account's runs from the database, newest first, once there are ``count`` (the API's
    access token would not outlive the test clock's jumps)."""
    deadline = time.monotonic() + timeout
    while True:
        async with runtime.db.session() as session:
            runs = list(await session.scalars(select(ReconciliationRun).where(
                ReconciliationRun.account_id == uuid.UUID(account_id)).order_by(ReconciliationRun.seq.desc())))
        if len(runs) >= count:
            return runs
        assert time.monotonic() < deadline, f"only {len(runs)} runs"
        await asyncio.sleep(0.05)


async def test_periodic_runs_follow_the_clock_and_a_failed_read_is_a_failed_run(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, clock: TestClock, runtime: Any) -> None:
    _, account = await reconciled(client, fake)
    await asyncio.sleep(0.3)  # several polls: no new run while the clock stands still
    assert len(await stored_runs(runtime, account["id"], 1)) == 1
    fake.fail_next("openOrders", 400, {"code": -1021, "msg": "Timestamp for this request is outside of the "
                                                             "recvWindow."})
    clock.advance(601)
    runs = await stored_runs(runtime, account["id"], 2)
    assert (runs[0].trigger, runs[0].status) == ("periodic", "failed") and runs[0].error_code
    clock.advance(601)
    runs = await stored_runs(runtime, account["id"], 3)
    assert (runs[0].trigger, runs[0].status, runs[0].differences) == ("periodic", "ok", [])
    await asyncio.sleep(0.3)
    assert len(await stored_runs(runtime, account["id"], 3)) == 3  # one run per interval, not one per poll


# --- (e) two processes: only the lease holder reconciles -------------------------------------------

async def test_only_the_lease_holder_reconciles_and_a_survivor_takes_over(
        client: httpx.AsyncClient, app: Any, fake: FakeBinanceSpot, settings: Settings, clock: TestClock,
        runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = uuid.UUID(account["id"])
    first = supervisor(runtime)
    assert first is not None and first.holder_of(aid) is not None
    second_app = create_app(settings, clock=clock)  # a second replica on the same database
    async with second_app.router.lifespan_context(second_app):
        second = supervisor(second_app.state.runtime)
        assert second is not None
        await second.scan()  # it competes for the account too
        await asyncio.sleep(1.5)  # more than one acquisition attempt
        assert second.holder_of(aid) is None and first.holder_of(aid) is not None
        transport = httpx.ASGITransport(app=second_app, client=("203.0.113.8", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            resp = await other.post(f"{ACCOUNTS}/{aid}/reconcile", headers=bearer(tokens))
            assert resp.status_code == 202 and resp.json()["status"] == "requested", resp.text
        holder = first.holder_of(aid)
        assert holder is not None and holder.lease is not None
        async with runtime.db.session() as session:
            runs = list(await session.scalars(select(ReconciliationRun).where(ReconciliationRun.account_id == aid)))
        old_holder = holder.lease.holder
        assert {r.holder for r in runs} == {old_holder}

        await first.stop()  # the holder goes away: its lease is released, the survivor takes over
        deadline = time.monotonic() + 60
        while second.holder_of(aid) is None:
            assert time.monotonic() < deadline, "the survivor never took the account over"
            await asyncio.sleep(0.05)
        taken = second.holder_of(aid)
        assert taken is not None and taken.lease is not None and taken.lease.name == lease_name(aid)
        listed = await wait_for_runs(client, tokens, account["id"], len(runs) + 1)
        assert listed[0]["trigger"] == "startup"
        async with runtime.db.session() as session:
            newest = await session.get(ReconciliationRun, uuid.UUID(listed[0]["id"]))
        assert newest is not None and newest.holder == taken.lease.holder != old_holder
        assert newest.lease_token > max(r.lease_token for r in runs)  # a new owner, a new fencing token
