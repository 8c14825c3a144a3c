"""Modify (cancel-replace) and the panic button's position closes on LIVE accounts: the real ccxt
``binance`` against the local fake in tests/fakes/binance_spot.py, on SQLite and PostgreSQL
(docs/exchanges.md, "Modify" and "The panic button")."""

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
from tests.integration.admin_support import make_admin
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ORDERS, assert_ledger_consistent
from tests.integration.test_live_reconciliation import (
    assert_ledger_equals_exchange,
    orders_of,
    reconcile,
    reconciled,
    runs_of,
    wait_for_runs,
)
from tests.integration.test_live_trading import API_KEY, live_account
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.trading.live.accounts import live_venues
from tradepilot.trading.live.modify import LiveModify
from tradepilot.trading.order_models import Order

D = Decimal
PANIC = "/api/trading/panic"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    return live_settings(database_url, tmp_path, fake, lease_ttl_seconds=5)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


def by_cid(fake: FakeBinanceSpot, cid: str) -> FakeOrder:
    return next(o for o in fake.orders if o.client_order_id == cid)


def cid_of(order_id: str, revision: int = 0) -> str:
    return f"tp-{uuid.UUID(order_id).hex}{'' if not revision else '0123456789'[revision]}"


def open_on_exchange(fake: FakeBinanceSpot) -> list[FakeOrder]:
    return [o for o in fake.orders if o.status in ("NEW", "PARTIALLY_FILLED")]


async def resting_buy(client: httpx.AsyncClient, tokens: dict, aid: str, quantity: str = "0.02",
                      price: str = "59000") -> dict:
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": quantity,
        "price": price})
    assert resp.status_code == 201 and resp.json()["status"] == "new", resp.text
    return resp.json()  # type: ignore[no-any-return]


# --- modify: cancel-replace ---------------------------------------------------------------------------

async def test_modify_cancels_on_the_exchange_and_places_the_replacement_under_a_new_client_id(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    order = await resting_buy(client, tokens, aid)
    resp = await client.put(f"{ORDERS}/{order['id']}", headers=bearer(tokens),
                            json={"price": "58500", "quantity": "0.03", "revision": 0})
    assert resp.status_code == 200, resp.text
    now = resp.json()
    assert (now["id"], now["revision"], now["status"], now["price"], now["quantity"]) == (
        order["id"], 1, "new", "58500", "0.03")
    old, new = by_cid(fake, cid_of(order["id"])), by_cid(fake, cid_of(order["id"], 1))
    assert (old.status, new.status, new.price, new.quantity) == ("CANCELED", "NEW", D("58500"), D("0.03"))
    assert open_on_exchange(fake) == [new]  # never two live orders for one platform order
    events = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in events] == ["received", "accepted", "replace_requested", "modified", "accepted"]
    await assert_ledger_consistent(runtime, aid)
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # the old revision is not "closed"

    # a stale revision is refused before anything is sent
    sent = len(fake.requests)
    stale = await client.put(f"{ORDERS}/{order['id']}", headers=bearer(tokens), json={"price": "58000", "revision": 0})
    assert (stale.status_code, stale.json()["code"]) == (409, "revision_mismatch")
    assert not [r for r in fake.requests[sent:] if r[0] in ("POST", "DELETE")]

    # the replacement fills later: its fills land on the same platform order
    fake.fill_resting(new.client_order_id, "0.03")
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["order_id"], d["status"]) for d in run["differences"]] == [
        ("fills_recorded", order["id"], "filled")]
    done = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (done["status"], done["filled_quantity"], done["reserved"]) == ("filled", "0.03", "0")
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_an_order_filled_while_being_modified_is_refused_with_its_fills_recorded(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    partly = await resting_buy(client, tokens, aid, price="59000")
    fully = await resting_buy(client, tokens, aid, price="58000")
    fake.fill_resting(cid_of(partly["id"]), "0.005")  # the market traded through them; nobody looked yet
    fake.fill_resting(cid_of(fully["id"]), "0.02")
    posted = len(fake.sent("POST", "order"))

    resp = await client.put(f"{ORDERS}/{partly['id']}", headers=bearer(tokens), json={"price": "58900"})
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert (problem["code"], problem["status"], problem["filled_quantity"]) == (
        "order_filled_during_modify", "canceled", "0.005")
    now = (await client.get(f"{ORDERS}/{partly['id']}", headers=bearer(tokens))).json()
    assert (now["status"], now["filled_quantity"], now["revision"], now["reserved"], now["cancel_reason"]) == (
        "canceled", "0.005", 0, "0", "canceled_for_modify")
    assert by_cid(fake, cid_of(partly["id"])).status == "CANCELED"

    resp = await client.put(f"{ORDERS}/{fully['id']}", headers=bearer(tokens), json={"quantity": "0.05"})
    assert (resp.status_code, resp.json()["code"], resp.json()["status"]) == (409, "order_filled_during_modify",
                                                                             "filled")
    assert len(fake.sent("POST", "order")) == posted  # no replacement was ever sent
    fills = (await client.get("/api/trading/fills", headers=bearer(tokens), params={"account_id": aid})).json()
    assert sorted(f["quantity"] for f in fills["items"]) == ["0.005", "0.02"]
    await assert_ledger_equals_exchange(runtime, fake, aid)
    assert (await reconcile(client, tokens, aid))["differences"] == []  # recorded once


async def test_a_crash_between_cancel_and_place_is_settled_by_reconciliation(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any, clock: TestClock) -> None:
    """The modify's own steps, stopped where a killed process would stop: one order after its old
    revision was cancelled and it was switched to its new revision, before the replacement was
    sent; another right after the cancel, before the switch."""
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    order = await resting_buy(client, tokens, aid)
    other = await resting_buy(client, tokens, aid, price="57000")
    modify = LiveModify(runtime.services["orders"].live)
    full = D("0.02") * D("58000") * D("1.002")  # comfortably the new reservation
    for which in (order, other):
        async with runtime.db.read() as session:
            row = await session.get(Order, uuid.UUID(which["id"]))
            session.expunge(row)
        revision = await modify._check(row.id, None, full, {"price": D("58000")})
        async with live_venues(runtime).open(await modify.placement.account_of(row.account_id)) as exchange:
            answer, _ = await modify.placement.ask_cancel(exchange, row)
        assert answer is not None and answer.status == "canceled"
        if which is order:
            await modify._switch(row.id, revision, full, {"price": D("58000")})
        # ... killed here: the replacement was never sent
    assert open_on_exchange(fake) == []
    pending = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (pending["status"], pending["revision"], pending["price"]) == ("pending_new", 1, "58000")
    assert (await client.get(f"{ORDERS}/{other['id']}", headers=bearer(tokens))).json()["status"] == "new"

    run = await reconcile(client, tokens, aid)  # young: the placement / the modify may still be on its way
    assert run["differences"] == []
    before = len(await runs_of(client, tokens, aid))
    clock.advance(61)  # past live_pending_grace_seconds (and the lease's TTL: it may be taken again, with a run)
    resp = await client.post(f"/api/trading/accounts/{aid}/reconcile", headers=bearer(tokens))
    assert resp.status_code in (200, 202), resp.text
    runs = (await wait_for_runs(client, tokens, aid, before + 1))[:-before]
    assert sorted((d["kind"], d["order_id"]) for r in runs for d in r["differences"]) == sorted([
        ("closed_on_exchange", other["id"]), ("pending_not_found", order["id"])])
    ended = (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (ended["status"], ended["reserved"]) == ("rejected", "0")
    ended = (await client.get(f"{ORDERS}/{other['id']}", headers=bearer(tokens))).json()
    assert (ended["status"], ended["reserved"], ended["revision"]) == ("canceled", "0", 0)
    assert open_on_exchange(fake) == [] and len(fake.sent("POST", "order")) == 2  # never sent, never twice
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_a_lost_answer_to_the_replacement_is_adopted_not_resent(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    order = await resting_buy(client, tokens, aid)
    fake.accept_then_timeout()
    fake.hide_fresh_orders = 100
    resp = await client.put(f"{ORDERS}/{order['id']}", headers=bearer(tokens), json={"price": "58000"})
    assert resp.status_code == 200 and resp.json()["status"] == "pending_new", resp.text
    new = by_cid(fake, cid_of(order["id"], 1))
    new.lookups_hidden = 0
    run = await reconcile(client, tokens, aid)
    assert [(d["kind"], d["order_id"], d["status"]) for d in run["differences"]] == [
        ("pending_adopted", order["id"], "new")]
    assert open_on_exchange(fake) == [new] and len(fake.sent("POST", "order")) == 2
    await assert_ledger_equals_exchange(runtime, fake, aid)


async def test_modify_refusals(client: httpx.AsyncClient, fake: FakeBinanceSpot) -> None:
    tokens, account = await reconciled(client, fake)
    aid = account["id"]
    order = await resting_buy(client, tokens, aid)
    for body, code in (({}, "nothing_to_modify"), ({"stop_price": "50000"}, "invalid_modify"),
                       ({"trail_percent": "1"}, "order_type_not_supported"),
                       ({"price": "58000.001"}, "invalid_tick_size"),
                       ({"quantity": "100"}, "insufficient_funds")):
        resp = await client.put(f"{ORDERS}/{order['id']}", headers=bearer(tokens), json=body)
        assert (resp.status_code, resp.json()["code"]) == (422, code), (body, resp.text)
    assert open_on_exchange(fake) == [by_cid(fake, cid_of(order["id"]))] and not fake.sent("DELETE", "order")


# --- the panic button ------------------------------------------------------------------------------------

async def test_panic_sells_only_what_the_platform_bought_and_leaves_the_users_own_alone(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    fake.fee_asset = "BTC"  # Binance's default for buys: the fee is taken from the coins bought
    tokens, account = await live_account(client, fake, {"USDT": "10000", "BTC": "0.5"})
    aid = account["id"]
    await wait_for_runs(client, tokens, aid, 1)
    resp = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.03"})
    assert resp.status_code == 201 and resp.json()["status"] == "filled", resp.text
    assert (await reconcile(client, tokens, aid))["differences"] == []  # the symbol's trades are followed from here
    by_hand_buy = fake.place_by_hand(API_KEY, "BTCUSDT", "buy", "market", "0.02")
    by_hand_sell = fake.place_by_hand(API_KEY, "BTCUSDT", "sell", "limit", "0.1", "65000")  # resting
    run = await reconcile(client, tokens, aid)
    assert sorted(d["kind"] for d in run["differences"]) == ["external_order", "external_order"], run["differences"]
    positions = (await client.get("/api/trading/positions", headers=bearer(tokens),
                                  params={"account_id": aid})).json()["items"]
    assert [p["quantity"] for p in positions if p["symbol"] == "BTC/USDT"] == ["0.05"]  # theirs and ours
    fake.fee_asset = None  # and a sell's fee is taken from what it receives (USDT)
    _, admin = await make_admin(client, runtime)  # the platform halt is on: panic's closes still go
    halted = await client.put("/api/admin/trading/halt", json={"reason": "exchange incident"}, headers=bearer(admin))
    assert halted.status_code == 200, halted.text
    refused = await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": aid, "symbol": "BTC/USDT", "side": "sell", "type": "market", "quantity": "0.01",
        "reduce_only": True})
    assert (refused.status_code, refused.json()["code"]) == (503, "trading_halted")
    posted = len(fake.sent("POST", "order"))

    resp = await client.post(PANIC, headers=bearer(tokens), json={"close_positions": True})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["canceled"], body["not_canceled"], body["trading_halted"]) == ([], [], True)  # the hand sell: not ours
    [close] = body["closes"]
    # ours: 0.03 bought, 0.00003 of it taken as the fee
    assert (close["symbol"], close["quantity"], close["status_code"], close["order"]["status"]) == (
        "BTC/USDT", "0.02997", 201, "filled")
    [sold] = fake.sent("POST", "order")[posted:]
    assert (sold["side"], sold["type"], D(sold["quantity"])) == ("SELL", "MARKET", D("0.02997"))
    assert sold["newClientOrderId"] == cid_of(close["order"]["id"])
    assert by_hand_sell.status == "NEW" and by_hand_buy.status == "FILLED"  # untouched
    assert not fake.sent("DELETE", "order")
    # the user's own coins stay: 0.5 deposited before + 0.02 bought by hand (less its fee)
    assert fake.accounts[API_KEY].balances["BTC"] == D("0.5") + D("0.02") - D("0.00002")
    await assert_ledger_equals_exchange(runtime, fake, aid)

    again = await client.post(PANIC, headers=bearer(tokens), json={"close_positions": True})
    [close] = again.json()["closes"]
    assert (close["status_code"], close["error"]["code"]) == (422, "nothing_to_close")  # nothing of ours is left
    assert len(fake.sent("POST", "order")) == posted + 1
    listed = {o["client_order_id"]: o for o in await orders_of(client, tokens, aid)}
    assert listed[by_hand_sell.client_order_id]["status"] == "new"
