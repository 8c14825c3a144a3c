"""Positions over HTTP: average-cost P&L through closes, close-all, server-side stop-loss and
take-profit fired by the matching owner (also after a restart), exits following the position,
and another user's position answering 404 on every route. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers import bearer, new_user
from tests.integration.admin_support import client_from
from tests.integration.orders_support import (
    ACCOUNTS,
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    deposit,
    get_order,
    place_ok,
    wait_for,
    wait_order,
    wait_working,
)
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.runtime import Runtime

POSITIONS = "/api/trading/positions"


async def open_btc_position(client: httpx.AsyncClient, tokens: dict, market: Market,
                            account_id: str | None = None) -> dict[str, Any]:
    """Two buys at different prices: 0.04 @ 60000 then 0.06 @ 61000 → 0.1 at an average of 60600,
    fees 2.4 + 3.66."""
    extra = {"account_id": account_id} if account_id else {}
    await market.book([("59000", "1")], [("60000", "0.04")])
    await place_ok(client, tokens, side="buy", type="market", quantity="0.04", **extra)
    await market.book([("59000", "1")], [("61000", "1")])
    await place_ok(client, tokens, side="buy", type="market", quantity="0.06", **extra)
    return await position_of(client, tokens, "BTC/USDT", account_id)


async def position_of(client: httpx.AsyncClient, tokens: dict, symbol: str,
                      account_id: str | None = None) -> dict[str, Any]:
    params = {"symbol": symbol, **({"account_id": account_id} if account_id else {})}
    resp = await client.get(POSITIONS, params=params, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) == 1, items
    return items[0]  # type: ignore[no-any-return]


async def get_position(client: httpx.AsyncClient, tokens: dict, position_id: str) -> dict[str, Any]:
    resp = await client.get(f"{POSITIONS}/{position_id}", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def pnl_of(position: dict[str, Any]) -> tuple[str, str | None, str, str]:
    return position["quantity"], position["average_entry_price"], position["realised_pnl"], position["fees"]


async def test_two_buys_then_partial_and_full_close_realise_exact_average_cost_pnl(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    position = await open_btc_position(client, tokens, market)
    assert pnl_of(position) == ("0.1", "60600", "0", "6.06")
    assert (position["status"], position["stop_loss"], position["take_profit"]) == ("open", None, None)
    await market.trade("60800", "0.01")  # the mark
    position = await get_position(client, tokens, position["id"])
    # (60800 − 60600) × 0.1; 0.1 × 60800
    assert (position["mark_price"], position["unrealised_pnl"], position["exposure"]) == ("60800", "20", "6080")

    await market.book([("61500", "0.02"), ("61400", "1")], [("61600", "1")])
    too_much = await client.post(f"{POSITIONS}/{position['id']}/close", json={"quantity": "0.10001"},
                                 headers=bearer(tokens))
    assert too_much.status_code == 422 and too_much.json()["code"] == "quantity_exceeds_position", too_much.text
    keyed = {**bearer(tokens), "Idempotency-Key": f"close-{uuid.uuid4()}"}
    resp = await client.post(f"{POSITIONS}/{position['id']}/close", json={"quantity": "0.05"}, headers=keyed)
    assert resp.status_code == 201, resp.text
    order = resp.json()
    replay = await client.post(f"{POSITIONS}/{position['id']}/close", json={"quantity": "0.05"}, headers=keyed)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == order  # a retry never sells twice
    # 0.02 @ 61500 + 0.03 @ 61400 = 1230 + 1842; fee 3.072
    assert (order["side"], order["type"], order["reduce_only"], order["status"]) == ("sell", "market", True, "filled")
    assert (order["filled_quote_quantity"], order["fees"]) == ("3072", "3.072")
    position = await get_position(client, tokens, position["id"])
    # (61500 − 60600) × 0.02 + (61400 − 60600) × 0.03 = 18 + 24; the average entry is unchanged
    assert pnl_of(position) == ("0.05", "60600", "42", "9.132")
    assert position["net_pnl"] == "32.868"
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]},
                              headers=bearer(tokens))).json()["items"]
    assert sorted((f["price"], f["realised_pnl"]) for f in fills) == [("61400", "24"), ("61500", "18")]

    resp = await client.post(f"{POSITIONS}/{position['id']}/close", headers=bearer(tokens))  # the rest
    assert resp.status_code == 201 and resp.json()["filled_quantity"] == "0.05", resp.text
    position = await get_position(client, tokens, position["id"])
    assert pnl_of(position) == ("0", None, "84", "12.204")
    assert (position["status"], position["opened_at"], position["unrealised_pnl"]) == ("closed", None, "0")
    again = await client.post(f"{POSITIONS}/{position['id']}/close", headers=bearer(tokens))
    assert again.status_code == 409 and again.json()["code"] == "position_not_open"
    # 10000 − 2402.4 − 3663.66 + 2 × (3072 − 3.072)
    assert await balances(client, tokens, account) == {"USDT": ("10071.796", "0"), "BTC": ("0", "0")}
    assert (await client.get(POSITIONS, params={"status": "open"}, headers=bearer(tokens))).json()["items"] == []
    closed = (await client.get(POSITIONS, params={"status": "closed"}, headers=bearer(tokens))).json()["items"]
    assert [p["id"] for p in closed] == [position["id"]]
    await assert_ledger_consistent(runtime, account)


async def test_close_all_closes_each_open_position_and_reports_the_ones_it_cannot(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    btc, eth = Market(runtime), Market(runtime, "ETH/USDT")
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    swing = (await client.post(ACCOUNTS, json={"name": "swing", "starting_balance": "10000"},
                               headers=bearer(tokens))).json()["id"]
    await open_btc_position(client, tokens, btc)
    await open_btc_position(client, tokens, btc, account_id=swing)
    await eth.book([("3000", "10")], [("3010", "10")])
    await place_ok(client, tokens, symbol="ETH/USDT", side="buy", type="market", quantity="1")
    await deposit(client, tokens, account, "SOL", "3")  # deposited coins are no position
    # the ETH coins are locked by a resting sell: that position cannot be sold at market
    resting = await place_ok(client, tokens, symbol="ETH/USDT", side="sell", type="limit", price="3500",
                             quantity="1")
    await btc.book([("62000", "1")], [("62010", "1")])

    resp = await client.post(f"{POSITIONS}/close-all", json={"account_id": account}, headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    results = {item["symbol"]: item for item in resp.json()["items"]}
    assert set(results) == {"BTC/USDT", "ETH/USDT"}  # only the default account's
    assert results["BTC/USDT"]["status"] == 201 and results["BTC/USDT"]["order"]["status"] == "filled"
    assert results["BTC/USDT"]["order"]["filled_quote_quantity"] == "6200"
    assert results["ETH/USDT"]["status"] == 422 and results["ETH/USDT"]["order"] is None
    assert results["ETH/USDT"]["error"]["code"] == "insufficient_position"
    # (62000 − 60600) × 0.1
    assert pnl_of(await position_of(client, tokens, "BTC/USDT", account))[:3] == ("0", None, "140")
    assert (await position_of(client, tokens, "BTC/USDT", swing))["quantity"] == "0.1"

    canceled = await client.delete(f"{ORDERS}/{resting['id']}", headers=bearer(tokens))
    assert canceled.status_code == 200
    resp = await client.post(f"{POSITIONS}/close-all", headers=bearer(tokens))  # everything left
    assert sorted((i["symbol"], i["account_id"], i["status"]) for i in resp.json()["items"]) == sorted(
        [("ETH/USDT", account, 201), ("BTC/USDT", swing, 201)])
    assert (await client.get(POSITIONS, params={"status": "open"}, headers=bearer(tokens))).json()["items"] == []
    nothing = await client.post(f"{POSITIONS}/close-all", json={"symbol": "btc-usdt"}, headers=bearer(tokens))
    assert nothing.status_code == 200 and nothing.json()["items"] == []
    for acc in (account, swing):
        await assert_ledger_consistent(runtime, acc)


async def test_a_stop_loss_is_replaced_then_fires_on_a_trade_through_it(client: httpx.AsyncClient,
                                                                       runtime: Runtime) -> None:
    market = Market(runtime)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    position = await open_btc_position(client, tokens, market)
    await market.trade("60500", "0.01")
    path = f"{POSITIONS}/{position['id']}/stop-loss"
    for body, code in (({"stop_price": "61000"}, "stop_loss_would_trigger"),
                       ({"stop_price": "59000.001"}, "invalid_tick_size"),
                       ({"stop_price": "0"}, "validation_error"),
                       ({}, "validation_error")):
        refused = await client.put(path, json=body, headers=bearer(tokens))
        assert refused.status_code == 422 and refused.json()["code"] == code, (body, refused.text)

    first = await client.put(path, json={"stop_price": "59000"}, headers=bearer(tokens))
    assert first.status_code == 200, first.text
    stop = first.json()["stop_loss"]
    assert (stop["type"], stop["price"], stop["quantity"], stop["status"]) == ("stop", "59000", "0.1", "new")
    # exits reserve nothing: the stop-loss and a take-profit may protect the same coins
    assert await balances(client, tokens, account) == {"USDT": ("3933.94", "0"), "BTC": ("0.1", "0")}
    same = (await client.put(path, json={"stop_price": "59000"}, headers=bearer(tokens))).json()
    assert same["stop_loss"]["order_id"] == stop["order_id"]  # the same stop again changes nothing
    replaced = (await client.put(path, json={"stop_price": "59500"}, headers=bearer(tokens))).json()["stop_loss"]
    assert replaced["order_id"] != stop["order_id"] and replaced["price"] == "59500"
    old = await get_order(client, tokens, stop["order_id"])
    assert (old["status"], old["cancel_reason"]) == ("canceled", "exit_replaced")
    new = await get_order(client, tokens, replaced["order_id"])
    assert (new["type"], new["side"], new["reduce_only"], new["stop_price"], new["reserved"]) == (
        "stop", "sell", True, "59500", "0")

    await wait_working(runtime, replaced["order_id"])
    await market.book([("59400", "0.05"), ("59300", "1")], [("59600", "1")])
    await market.trade("59510", "1")  # above the stop: nothing
    await market.trade("59500", "0.001")  # at it: fires, sells 0.05 @ 59400 + 0.05 @ 59300
    done = await wait_order(client, tokens, replaced["order_id"], lambda o: o["status"] == "filled", "the stop-loss")
    assert (done["filled_quote_quantity"], done["fees"]) == ("5935", "5.935")
    position = await get_position(client, tokens, position["id"])
    # (59400 − 60600) × 0.05 + (59300 − 60600) × 0.05 = −60 − 65
    assert pnl_of(position) == ("0", None, "-125", "11.995")
    assert (position["status"], position["stop_loss"]) == ("closed", None)
    assert await balances(client, tokens, account) == {"USDT": ("9863.005", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_take_profit_fires_and_cancels_the_stop_loss(client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    position = await open_btc_position(client, tokens, market)
    await market.trade("60500", "0.01")
    tp_path, sl_path = f"{POSITIONS}/{position['id']}/take-profit", f"{POSITIONS}/{position['id']}/stop-loss"
    below = await client.put(tp_path, json={"price": "60000"}, headers=bearer(tokens))
    assert below.status_code == 422 and below.json()["code"] == "take_profit_would_trigger", below.text
    take = (await client.put(tp_path, json={"price": "62000"}, headers=bearer(tokens))).json()["take_profit"]
    stop = (await client.put(sl_path, json={"stop_price": "59000"}, headers=bearer(tokens))).json()
    assert stop["take_profit"]["order_id"] == take["order_id"] and take["type"] == "take_profit"
    stop = stop["stop_loss"]
    await wait_working(runtime, take["order_id"])
    await market.book([("62100", "1")], [("62200", "1")])
    await market.trade("62000", "0.001")  # fires the take-profit: sells 0.1 @ 62100
    done = await wait_order(client, tokens, take["order_id"], lambda o: o["status"] == "filled", "the take-profit")
    assert (done["average_fill_price"], done["fees"]) == ("62100", "6.21")
    # the position is flat: its stop-loss went in the same transaction
    sl = await get_order(client, tokens, stop["order_id"])
    assert (sl["status"], sl["cancel_reason"]) == ("canceled", "position_closed")
    position = await get_position(client, tokens, position["id"])
    assert pnl_of(position) == ("0", None, "150", "12.27")  # (62100 − 60600) × 0.1
    assert (position["stop_loss"], position["take_profit"]) == (None, None)
    await wait_for(lambda: not runtime.services["matching"].working(stop["order_id"]), "the owner to drop the stop")
    await assert_ledger_consistent(runtime, account)


async def test_exits_follow_the_position_a_limit_take_profit_and_removal(client: httpx.AsyncClient,
                                                                        runtime: Runtime) -> None:
    market = Market(runtime)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    position = await open_btc_position(client, tokens, market)
    pid = position["id"]
    sl = (await client.put(f"{POSITIONS}/{pid}/stop-loss", json={"stop_price": "59000"},
                           headers=bearer(tokens))).json()["stop_loss"]
    # a partial close shrinks the stop-loss to what is left (a new order; the old one canceled)
    await market.book([("60700", "1")], [("60710", "1")])
    closed = await client.post(f"{POSITIONS}/{pid}/close", json={"quantity": "0.03"}, headers=bearer(tokens))
    assert closed.status_code == 201, closed.text
    view = await get_position(client, tokens, pid)
    assert view["quantity"] == "0.07" and view["stop_loss"]["quantity"] == "0.07"
    assert view["stop_loss"]["order_id"] != sl["order_id"] and view["stop_loss"]["price"] == "59000"
    old = await get_order(client, tokens, sl["order_id"])
    assert (old["status"], old["cancel_reason"]) == ("canceled", "exit_resized")
    owner = runtime.services["matching"]  # the matching owner swaps them too
    await wait_working(runtime, view["stop_loss"]["order_id"])
    await wait_for(lambda: not owner.working(sl["order_id"]), "the owner to drop the resized stop-loss")
    # buying more grows it
    await place_ok(client, tokens, side="buy", type="market", quantity="0.01")  # @ 60710
    view = await get_position(client, tokens, pid)
    assert (view["quantity"], view["stop_loss"]["quantity"]) == ("0.08", "0.08")

    take = await client.put(f"{POSITIONS}/{pid}/take-profit", json={"price": "62000", "type": "limit"},
                            headers=bearer(tokens))
    assert take.status_code == 200, take.text
    take = take.json()["take_profit"]
    assert (take["type"], take["price"], take["quantity"]) == ("limit", "62000", "0.08")
    sl = (await get_position(client, tokens, pid))["stop_loss"]
    await wait_working(runtime, take["order_id"])
    await market.trade("62000", "0.03")  # the resting take-profit fills 0.03 as a maker
    await wait_order(client, tokens, take["order_id"], lambda o: o["filled_quantity"] == "0.03", "a partial fill")
    view = await get_position(client, tokens, pid)
    assert view["quantity"] == "0.05"
    assert view["take_profit"]["order_id"] == take["order_id"] and view["take_profit"]["quantity"] == "0.05"
    assert view["stop_loss"]["quantity"] == "0.05" and view["stop_loss"]["order_id"] != sl["order_id"]

    removed = await client.delete(f"{POSITIONS}/{pid}/stop-loss", headers=bearer(tokens))
    assert removed.status_code == 200 and removed.json()["stop_loss"] is None, removed.text
    gone = await get_order(client, tokens, view["stop_loss"]["order_id"])
    assert (gone["status"], gone["cancel_reason"]) == ("canceled", "exit_removed")
    nulled = await client.put(f"{POSITIONS}/{pid}/take-profit", json={"price": None}, headers=bearer(tokens))
    assert nulled.status_code == 200 and nulled.json()["take_profit"] is None
    assert (await get_order(client, tokens, take["order_id"]))["cancel_reason"] == "exit_removed"
    # a stop-loss needs the coins free: a resting sell of all of them leaves nothing to protect
    await place_ok(client, tokens, side="sell", type="limit", price="65000", quantity="0.05")
    refused = await client.put(f"{POSITIONS}/{pid}/stop-loss", json={"stop_price": "59000"}, headers=bearer(tokens))
    assert refused.status_code == 422 and refused.json()["code"] == "insufficient_position", refused.text
    await assert_ledger_consistent(runtime, account)


async def test_a_stop_loss_fires_after_a_restart(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = create_app(make_settings(database_url, data_dir=tmp_path / "var"))
    async with first.router.lifespan_context(first), client_from(first, "203.0.113.31") as client:
        runtime = first.state.runtime
        _, tokens = await new_user(client)
        account = await default_account(client, tokens)
        position = await open_btc_position(client, tokens, Market(runtime))
        stop = (await client.put(f"{POSITIONS}/{position['id']}/stop-loss", json={"stop_price": "59000"},
                                 headers=bearer(tokens))).json()["stop_loss"]
        await wait_working(runtime, stop["order_id"])
    # a new process on the same database: the matching owner re-arms the stop-loss from it
    second = create_app(make_settings(database_url, data_dir=tmp_path / "var"))
    async with second.router.lifespan_context(second), client_from(second, "203.0.113.32") as client:
        runtime = second.state.runtime
        await wait_working(runtime, stop["order_id"])
        market = Market(runtime)
        await market.book([("58900", "1")], [("59100", "1")])
        await market.trade("58950", "0.01")
        done = await wait_order(client, tokens, stop["order_id"], lambda o: o["status"] == "filled", "the stop")
        assert (done["average_fill_price"], done["fees"]) == ("58900", "5.89")
        position = await get_position(client, tokens, position["id"])
        assert pnl_of(position) == ("0", None, "-170", "11.95")  # (58900 − 60600) × 0.1
        # 3933.94 + 5890 − 5.89
        assert await balances(client, tokens, account) == {"USDT": ("9818.05", "0"), "BTC": ("0", "0")}
        await assert_ledger_consistent(runtime, account)


async def test_another_users_position_is_404_on_every_route(client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    _, owner = await new_user(client)
    _, stranger = await new_user(client)
    position = await open_btc_position(client, owner, market)
    await client.put(f"{POSITIONS}/{position['id']}/stop-loss", json={"stop_price": "59000"}, headers=bearer(owner))
    await market.book([("61000", "1")], [("61010", "1")])
    for pid in (position["id"], str(uuid.uuid4())):
        for method, path, body in (("GET", f"{POSITIONS}/{pid}", None),
                                   ("POST", f"{POSITIONS}/{pid}/close", {"quantity": "0.01"}),
                                   ("PUT", f"{POSITIONS}/{pid}/stop-loss", {"stop_price": "58000"}),
                                   ("DELETE", f"{POSITIONS}/{pid}/stop-loss", None),
                                   ("PUT", f"{POSITIONS}/{pid}/take-profit", {"price": "65000"}),
                                   ("DELETE", f"{POSITIONS}/{pid}/take-profit", None)):
            resp = await client.request(method, path, json=body, headers=bearer(stranger))
            assert resp.status_code == 404 and resp.json()["code"] == "position_not_found", (method, path, resp.text)
    for method, path in (("GET", POSITIONS), ("POST", f"{POSITIONS}/close-all")):
        mine = await client.request(method, path, headers=bearer(stranger))
        assert mine.status_code == 200 and mine.json()["items"] == [], (path, mine.text)
    theirs = await client.get(POSITIONS, params={"account_id": position["account_id"]}, headers=bearer(stranger))
    assert theirs.status_code == 404 and theirs.json()["code"] == "account_not_found"
    theirs = await client.post(f"{POSITIONS}/close-all", json={"account_id": position["account_id"]},
                               headers=bearer(stranger))
    assert theirs.status_code == 404 and theirs.json()["code"] == "account_not_found"
    after = await get_position(client, owner, position["id"])
    assert (after["quantity"], after["stop_loss"]["price"], after["take_profit"]) == ("0.1", "59000", None)
