"""POST /api/trading/panic: every open order of the user canceled, positions closed at market
(reduce-only), also while the platform halt is on; only the caller's things. SQLite and
PostgreSQL."""

from __future__ import annotations

import httpx

from tests.helpers import bearer, new_user
from tests.integration.admin_support import make_admin
from tests.integration.orders_support import (
    ACCOUNTS,
    ASKS,
    BIDS,
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    get_order,
    place,
    place_ok,
    positions,
)
from tradepilot.runtime import Runtime

PANIC = "/api/trading/panic"


async def test_the_panic_button_cancels_everything_and_closes_the_positions(client: httpx.AsyncClient,
                                                                           runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    swing = (await client.post(ACCOUNTS, json={"name": "Swing", "starting_balance": "5000"},
                               headers=bearer(tokens))).json()["id"]
    await place_ok(client, tokens, side="buy", type="market", quantity="0.05")  # 0.04 @ 60000 + 0.01 @ 60010
    await place_ok(client, tokens, side="buy", type="market", quantity="0.02", account_id=swing)  # @ 60010
    resting = [await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01"),
               await place_ok(client, tokens, side="sell", type="limit", price="61000", quantity="0.01"),
               await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01",
                              account_id=swing)]
    bracket = await place_ok(client, tokens, side="buy", type="limit", price="58000", quantity="0.01",
                             take_profit={"price": "62000"}, stop_loss={"stop_price": "57000"})
    _, other = await new_user(client)
    await place_ok(client, other, side="buy", type="market", quantity="0.01")
    theirs = await place_ok(client, other, side="buy", type="limit", price="59000", quantity="0.01")

    resp = await client.post(PANIC, json={"close_positions": True}, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    expected = {o["id"] for o in resting} | {bracket["id"]} | {leg["id"] for leg in bracket["legs"]}
    assert set(body["canceled"]) == expected and body["canceled_count"] == 6 and body["trading_halted"] is False
    closes = {(c["account_id"], c["symbol"]): c for c in body["closes"]}
    assert set(closes) == {(account, "BTC/USDT"), (swing, "BTC/USDT")}
    mine = closes[(account, "BTC/USDT")]
    # the whole 0.05, reduce-only, into the bids: 0.03 @ 59990 + 0.02 @ 59980
    assert (mine["status_code"], mine["quantity"], mine["order"]["status"], mine["order"]["reduce_only"]) == (
        201, "0.05", "filled", True)
    assert mine["order"]["filled_quote_quantity"] == "2999.3"
    assert closes[(swing, "BTC/USDT")]["order"]["status"] == "filled"
    for order in resting:
        assert (await get_order(client, tokens, order["id"]))["status"] == "canceled"
    assert all(p["quantity"] == "0" for p in (await positions(client, tokens)).values())
    # 10000 − (3000.1 + 3.0001) + (2999.3 − 2.9993)
    assert await balances(client, tokens, account) == {"USDT": ("9993.2006", "0"), "BTC": ("0", "0")}
    assert (await balances(client, tokens, swing))["BTC"] == ("0", "0")
    await assert_ledger_consistent(runtime, account)
    await assert_ledger_consistent(runtime, swing)
    # someone else's orders and positions are untouched
    assert (await get_order(client, other, theirs["id"]))["status"] == "new"
    assert (await positions(client, other))["BTC/USDT"]["quantity"] == "0.01"
    # pressing it again finds nothing left to do
    again = (await client.post(PANIC, json={"close_positions": True}, headers=bearer(tokens))).json()
    assert (again["canceled"], again["closes"]) == ([], [])


async def test_panic_works_during_a_halt_for_one_account_and_only_yours(client: httpx.AsyncClient,
                                                                        runtime: Runtime) -> None:
    await Market(runtime).book(BIDS, ASKS)
    _, admin = await make_admin(client, runtime)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    swing = (await client.post(ACCOUNTS, json={"name": "Swing", "starting_balance": "5000"},
                               headers=bearer(tokens))).json()["id"]
    await place_ok(client, tokens, side="buy", type="market", quantity="0.03")  # 0.03 @ 60000
    open_order = await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01")
    kept = await place_ok(client, tokens, side="buy", type="limit", price="59000", quantity="0.01", account_id=swing)
    halted = await client.put("/api/admin/trading/halt", json={"reason": "exchange incident"}, headers=bearer(admin))
    assert halted.status_code == 200
    refused = await place(client, tokens, side="sell", type="market", quantity="0.03", reduce_only=True)
    assert refused.status_code == 503 and refused.json()["code"] == "trading_halted"

    _, other = await new_user(client)
    foreign = await client.post(PANIC, json={"account_id": account}, headers=bearer(other))
    assert foreign.status_code == 404 and foreign.json()["code"] == "account_not_found"

    resp = await client.post(PANIC, json={"close_positions": True, "account_id": account}, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["canceled"] == [open_order["id"]] and body["trading_halted"] is True
    (close,) = body["closes"]
    # during the halt: a reduce-only close only reduces risk, so it goes through; 0.03 @ 59990
    assert (close["quantity"], close["order"]["status"], close["order"]["filled_quote_quantity"]) == (
        "0.03", "filled", "1799.7")
    assert (await get_order(client, tokens, kept["id"]))["status"] == "new"  # another account: untouched
    # 10000 − 1801.8 + 1799.7 − 1.7997
    assert await balances(client, tokens, account) == {"USDT": ("9996.1003", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)
    still = await place(client, tokens, side="buy", type="market", quantity="0.01")
    assert still.status_code == 503 and still.json()["code"] == "trading_halted"
    assert (await client.get(ORDERS, params={"status": "open"}, headers=bearer(tokens))).json()["items"][0][
        "id"] == kept["id"]
