"""Orders under concurrency and across users: no dollar spent twice, one order per
Idempotency-Key, another user's order is 404 everywhere, events reach the account channel.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
from sqlalchemy import func, select

from tests.helpers import bearer, new_user
from tests.integration.orders_support import (
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    place,
    place_ok,
    wait_working,
)
from tests.integration.ws_helpers import authed, uvicorn_server
from tradepilot.runtime import Runtime
from tradepilot.trading.order_models import Fill, Order

DEEP_ASKS = [("60000", "10")]
BIDS = [("59990", "10")]


async def test_fifty_concurrent_market_buys_beyond_the_balance(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    # each costs 0.01 × 60000 × 1.001 = 600.6: 16 of them fit in 10000
    answers = await asyncio.gather(*(place(client, tokens, side="buy", type="market", quantity="0.01")
                                     for _ in range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 16 + [422] * 34, [a.text for a in answers if a.status_code not in (201, 422)]
    assert {a.json()["code"] for a in answers if a.status_code == 422} == {"insufficient_funds"}
    assert {a.json()["status"] for a in answers if a.status_code == 201} == {"filled"}
    assert await balances(client, tokens, account) == {"USDT": ("390.4", "0"), "BTC": ("0.16", "0")}
    await assert_ledger_consistent(runtime, account)
    async with runtime.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 16
        assert await session.scalar(select(func.count()).select_from(Fill)) == 16


async def test_one_idempotency_key_sent_twenty_times_at_once_places_one_order(client: httpx.AsyncClient,
                                                                           runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    headers = {**bearer(tokens), "Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"}
    answers = await asyncio.gather(*(client.post(ORDERS, json=body, headers=headers) for _ in range(20)))
    created = [a for a in answers if a.status_code == 201]
    assert created and all(a.status_code in (201, 409) for a in answers), [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} <= {"idempotency_request_in_progress"}
    assert len({a.json()["id"] for a in created}) == 1
    assert sum(1 for a in created if a.headers.get("Idempotent-Replayed") != "true") == 1
    replay = await client.post(ORDERS, json=body, headers=headers)  # afterwards: the stored answer
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == created[0].json()
    different = await client.post(ORDERS, json={**body, "quantity": "0.02"}, headers=headers)
    assert different.status_code == 422 and different.json()["code"] == "idempotency_key_reused"
    async with runtime.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Order)) == 1
    assert await balances(client, tokens, account) == {"USDT": ("9399.4", "0"), "BTC": ("0.01", "0")}
    # another user with the same key gets their own order
    _, other = await new_user(client)
    theirs = await client.post(ORDERS, json=body, headers={**bearer(other), "Idempotency-Key": headers[
        "Idempotency-Key"]})
    assert theirs.status_code == 201 and theirs.json()["id"] != created[0].json()["id"]


async def test_a_failed_order_releases_its_idempotency_key(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, tokens = await new_user(client)
    headers = {**bearer(tokens), "Idempotency-Key": "retry-me"}
    body = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "1"}
    refused = await client.post(ORDERS, json=body, headers=headers)
    assert refused.status_code == 422 and refused.json()["code"] == "insufficient_funds"
    fixed = await client.post(ORDERS, json={**body, "quantity": "0.1"}, headers=headers)
    assert fixed.status_code == 201 and fixed.json()["status"] == "filled", fixed.text


async def test_another_users_order_is_404_on_every_route(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, owner = await new_user(client)
    _, stranger = await new_user(client)
    order = await place_ok(client, owner, side="buy", type="limit", price="59000", quantity="0.01")
    missing = str(uuid.uuid4())
    for oid in (order["id"], missing):
        for method, path in (("GET", f"{ORDERS}/{oid}"), ("GET", f"{ORDERS}/{oid}/events"),
                             ("DELETE", f"{ORDERS}/{oid}")):
            resp = await client.request(method, path, headers=bearer(stranger))
            assert resp.status_code == 404 and resp.json()["code"] == "order_not_found", (method, path, resp.text)
    for path in (ORDERS, "/api/trading/fills", "/api/trading/positions"):
        listed = await client.get(path, headers=bearer(stranger))
        assert listed.status_code == 200 and listed.json()["items"] == [], path
        theirs = await client.get(path, params={"account_id": order["account_id"]}, headers=bearer(stranger))
        assert theirs.status_code == 404 and theirs.json()["code"] == "account_not_found", path
    # ordering from someone else's account is 404 too, and nothing moved
    resp = await place(client, stranger, side="buy", type="market", quantity="0.01", account_id=order["account_id"])
    assert resp.status_code == 404 and resp.json()["code"] == "account_not_found"
    assert (await client.get(f"{ORDERS}/{order['id']}", headers=bearer(owner))).json()["status"] == "new"
    assert await balances(client, owner, order["account_id"]) == {"USDT": ("9409.41", "590.59")}


async def test_a_read_only_key_cannot_trade(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, tokens = await new_user(client)
    created = await client.post("/api/users/me/api-keys", json={"name": "ro", "scopes": ["read"]},
                                headers=bearer(tokens))
    key = {"X-API-Key": created.json()["key"]}
    resp = await client.post(ORDERS, json={"symbol": "BTC/USDT", "side": "buy", "type": "market",
                                           "quantity": "0.01"}, headers=key)
    assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope"
    assert (await client.get(ORDERS, headers=key)).status_code == 200


async def test_the_account_channel_sees_the_order_its_fills_position_and_balances_in_order(
        app, client: httpx.AsyncClient, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
    await Market(runtime).book(BIDS, [("60000", "0.004"), ("60010", "1")])
    profile, tokens = await new_user(client)
    async with uvicorn_server(app) as address, contextlib.AsyncExitStack() as stack:
        ws = await authed(address, tokens["access_token"], stack)
        await ws.subscribe("account")
        await ws.expect_type("subscribed", channel="account")
        order = await place_ok(client, tokens, side="buy", type="market", quantity="0.01")
        seen = []
        while not seen or seen[-1]["type"] != "order.updated":
            message = await ws.expect_type("event", timeout=30)
            if message["seq"] > 2:  # after the registration's account.created and starting balance
                seen.append(message["data"])
        assert [(e["type"], e["kind"]) for e in seen] == [
            ("balance.updated", "balances"),
            ("balance.updated", "balances"), ("fill.created", "fills"),
            ("balance.updated", "balances"), ("fill.created", "fills"),
            ("position.updated", "positions"), ("order.updated", "orders")]
        assert seen[-1]["payload"]["order"]["id"] == order["id"]
        assert seen[-1]["payload"]["order"]["status"] == "filled"
        assert seen[-2]["payload"]["position"]["quantity"] == "0.01"
    assert profile["id"]


async def test_a_resting_order_counts_against_the_plans_open_orders(client: httpx.AsyncClient,
                                                                    runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, DEEP_ASKS)
    _, tokens = await new_user(client)
    resp = await client.put("/api/users/me/settings", json={"limits": {"open_orders": 2}}, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    first = await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")
    await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")
    third = await place(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")
    assert third.status_code == 422 and third.json()["code"] == "open_orders_limit", third.text
    limits = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert limits["usage"]["open_orders"] == 2, limits
    await wait_working(runtime, first["id"])
    assert (await client.delete(f"{ORDERS}/{first['id']}", headers=bearer(tokens))).status_code == 200
    assert (await place(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")).status_code == 201
