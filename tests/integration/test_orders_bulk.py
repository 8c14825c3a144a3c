"""POST /api/trading/orders/bulk (atomic or not) and DELETE /api/trading/orders/bulk (only the
caller's orders). SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.helpers import bearer, new_user
from tests.integration.orders_support import (
    ACCOUNTS,
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    get_order,
    place_ok,
    user_events,
    wait_for,
    wait_working,
)
from tradepilot.runtime import Runtime
from tradepilot.trading.order_models import Order

BULK = f"{ORDERS}/bulk"


def limit(price: str, quantity: str, **extra: Any) -> dict[str, Any]:
    return {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "price": price, "quantity": quantity, **extra}


async def count_orders(runtime: Runtime) -> int:
    async with runtime.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


async def test_a_non_atomic_batch_places_what_it_can_and_says_why_not_for_the_rest(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    orders = [limit("59900", "0.05"),
              limit("59000", "1"),  # 59059 does not fit in what is left
              {"symbol": "BTC/USDT", "side": "buy", "type": "teleport", "quantity": "1"},
              {"symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": 0.01},
              limit("59900.001", "0.01")]
    headers = {**bearer(tokens), "Idempotency-Key": f"bulk-{uuid.uuid4()}"}
    resp = await client.post(BULK, json={"orders": orders}, headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["atomic"], body["placed"], body["failed"]) == (False, 2, 3)
    results = body["results"]
    assert [(r["index"], r["status_code"]) for r in results] == [(0, 201), (1, 422), (2, 422), (3, 201), (4, 422)]
    assert [r["error"]["code"] for r in results if r["error"]] == [
        "insufficient_funds", "validation_error", "invalid_tick_size"]
    assert results[2]["error"]["errors"][0]["field"] == "type"
    assert results[4]["error"]["nearest"] == ["59900", "59900.01"]
    assert (results[0]["order"]["status"], results[0]["order"]["reserved"]) == ("new", "2997.995")
    assert (results[3]["order"]["status"], results[3]["order"]["filled_quote_quantity"]) == ("filled", "600")
    # 10000 − 2997.995 − (600 + 0.6)
    assert await balances(client, tokens, account) == {"USDT": ("6401.405", "2997.995"), "BTC": ("0.01", "0")}
    await assert_ledger_consistent(runtime, account)
    replay = await client.post(BULK, json={"orders": orders}, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == body
    assert await count_orders(runtime) == 2


async def test_an_atomic_batch_with_one_failure_writes_nothing(client: httpx.AsyncClient, runtime: Runtime,
                                                               market: Market) -> None:
    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    before = len(await user_events(runtime, profile["id"]))
    # each fits alone; together the second one finds the first one's reservation taken
    orders = [limit("59900", "0.1"), {"symbol": "BTC/USDT", "side": "buy", "type": "market", "quantity": "0.01"},
              limit("59900", "0.1")]
    resp = await client.post(BULK, json={"orders": orders, "atomic": True}, headers=bearer(tokens))
    assert resp.status_code == 422 and resp.json()["code"] == "batch_rejected", resp.text
    assert [(r["index"], r["status_code"], r["error"]["code"]) for r in resp.json()["results"]] == [
        (0, 424, "batch_rolled_back"), (1, 424, "batch_rolled_back"), (2, 422, "insufficient_funds")]
    assert await count_orders(runtime) == 0
    assert len(await user_events(runtime, profile["id"])) == before
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    await assert_ledger_consistent(runtime, account)
    # the same batch that fits goes in whole
    ok = await client.post(BULK, json={"orders": orders[:2], "atomic": True}, headers=bearer(tokens))
    assert ok.status_code == 200 and (ok.json()["placed"], ok.json()["failed"]) == (2, 0), ok.text
    assert await count_orders(runtime) == 2
    await assert_ledger_consistent(runtime, account)


async def test_batch_limits_and_a_bracket_inside_a_batch(client: httpx.AsyncClient, runtime: Runtime,
                                                         market: Market) -> None:
    _, tokens = await new_user(client)
    too_many = await client.post(BULK, json={"orders": [limit("50000", "0.001")] * 51}, headers=bearer(tokens))
    assert too_many.status_code == 422 and too_many.json()["code"] == "batch_too_large"
    assert too_many.json()["max"] == 50
    empty = await client.post(BULK, json={"orders": []}, headers=bearer(tokens))
    assert empty.status_code == 422 and empty.json()["code"] == "validation_error"
    resp = await client.post(BULK, json={"orders": [limit("59900", "0.01", take_profit={"price": "61000"})]},
                             headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["results"]
    assert item["order"]["group_kind"] == "bracket" and [leg["group_role"] for leg in item["order"]["legs"]] == [
        "take_profit"]
    assert await count_orders(runtime) == 2


async def test_cancel_all_touches_only_the_callers_orders(client: httpx.AsyncClient, runtime: Runtime,
                                                         market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    second = await client.post(ACCOUNTS, json={"name": "Swing", "starting_balance": "5000"}, headers=bearer(tokens))
    assert second.status_code == 201, second.text
    swing = second.json()["id"]
    mine = [await place_ok(client, tokens, **limit("59900", "0.01")),
            await place_ok(client, tokens, **limit("59800", "0.01", account_id=swing)),
            await place_ok(client, tokens, **limit("3000", "0.01", symbol="ETH/USDT"))]
    bracket = await place_ok(client, tokens, **limit("59700", "0.01", take_profit={"price": "61000"},
                                                     stop_loss={"stop_price": "59000"}))
    _, other = await new_user(client)
    theirs = await place_ok(client, other, **limit("59900", "0.01"))

    eth = await client.delete(BULK, params={"symbol": "eth-usdt"}, headers=bearer(tokens))
    assert eth.status_code == 200 and eth.json() == {"canceled": [mine[2]["id"]], "count": 1, "not_canceled": []}, eth.text
    stranger = await client.delete(BULK, params={"account_id": account}, headers=bearer(other))
    assert stranger.status_code == 404 and stranger.json()["code"] == "account_not_found"
    swing_only = await client.delete(BULK, params={"account_id": swing}, headers=bearer(tokens))
    assert swing_only.json() == {"canceled": [mine[1]["id"]], "count": 1, "not_canceled": []}
    rest = await client.delete(BULK, headers=bearer(tokens))
    assert rest.status_code == 200
    expected = {mine[0]["id"], bracket["id"], *(leg["id"] for leg in bracket["legs"])}
    assert set(rest.json()["canceled"]) == expected and rest.json()["count"] == 4
    assert (await client.delete(BULK, headers=bearer(tokens))).json() == {"canceled": [], "count": 0, "not_canceled": []}
    for order in mine:
        assert (await get_order(client, tokens, order["id"]))["status"] == "canceled"
    assert (await get_order(client, other, theirs["id"]))["status"] == "new"
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    assert await balances(client, tokens, swing) == {"USDT": ("5000", "0")}
    await assert_ledger_consistent(runtime, account)
    await assert_ledger_consistent(runtime, swing)
    owner = runtime.services["matching"]
    await wait_for(lambda: not any(owner.working(o["id"]) for o in mine), "the owner to drop them")
    await wait_working(runtime, theirs["id"])
