"""Placing and cancelling orders over HTTP against a deterministic book: exact fills, fees,
balances (free / locked), positions, statuses and the outbox. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import (
    ORDERS,
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    deposit,
    get_order,
    place,
    place_ok,
    positions,
    user_events,
)
from tradepilot.runtime import Runtime


async def test_the_plans_market_buy_walks_three_levels_with_exact_price_fee_balances_and_position(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    resp = await client.post(ORDERS, content=b'{"symbol":"BTC/USDT","side":"buy","quantity":0.1,"type":"market"}',
                             headers={**bearer(tokens), "Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text
    order = resp.json()
    expected = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "time_in_force": "gtc", "quantity": "0.1",
                "price": None, "stop_price": None, "status": "filled", "filled_quantity": "0.1",
                "filled_quote_quantity": "6000.7", "average_fill_price": "60007", "fees": "6.0007",
                "fee_asset": "USDT", "reserved": "0", "revision": 0, "account_id": account}
    assert {k: order[k] for k in expected} == expected
    assert order["client_order_id"] and order["created_at"] and order["updated_at"] and order["id"]
    # 0.04 @ 60000 + 0.05 @ 60010 + 0.01 @ 60020 = 6000.7; fees 0.1 % of each
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]}, headers=bearer(tokens))).json()
    assert sorted((f["price"], f["quantity"], f["fee"], f["liquidity"]) for f in fills["items"]) == [
        ("60000", "0.04", "2.4", "taker"), ("60010", "0.05", "3.0005", "taker"), ("60020", "0.01", "0.6002", "taker")]
    assert {f["trade_id"] for f in fills["items"]} == {f"{order['id']}-{n}" for n in (1, 2, 3)}
    assert await balances(client, tokens, account) == {"USDT": ("3993.2993", "0"), "BTC": ("0.1", "0")}
    position = (await positions(client, tokens))["BTC/USDT"]
    assert (position["quantity"], position["average_entry_price"], position["fees"], position["realised_pnl"]) == (
        "0.1", "60007", "6.0007", "0")
    assert await get_order(client, tokens, order["id"]) == order
    await assert_ledger_consistent(runtime, account)
    # every change reached the outbox, in order, on the user's topics
    events = [(e.type, e.topic.rsplit(".", 1)[1]) for e in await user_events(runtime, profile["id"])]
    assert events[-9:] == [("balance.updated", "balances"),  # the reservation: the walk's exact cost
                           ("balance.updated", "balances"), ("fill.created", "fills"),
                           ("balance.updated", "balances"), ("fill.created", "fills"),
                           ("balance.updated", "balances"), ("fill.created", "fills"),
                           ("position.updated", "positions"), ("order.updated", "orders")]
    history = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [(e["seq"], e["type"], e["status"]) for e in history] == [
        (1, "received", "pending_new"), (2, "accepted", "new"), (3, "fill", "partially_filled"),
        (4, "fill", "partially_filled"), (5, "fill", "filled")]


async def test_a_sale_realises_average_cost_pnl(client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await place_ok(client, tokens, side="buy", type="market", quantity="0.1")  # avg 60007
    sold = await place_ok(client, tokens, side="sell", type="market", quantity="0.05")
    # 0.03 @ 59990 + 0.02 @ 59980 = 1799.7 + 1199.6 = 2999.3; fee 2.9993
    assert (sold["status"], sold["filled_quote_quantity"], sold["fees"]) == ("filled", "2999.3", "2.9993")
    position = (await positions(client, tokens))["BTC/USDT"]
    # (59990 − 60007) × 0.03 + (59980 − 60007) × 0.02 = −0.51 − 0.54
    assert (position["quantity"], position["average_entry_price"], position["realised_pnl"], position["fees"]) == (
        "0.05", "60007", "-1.05", "9")
    assert await balances(client, tokens, account) == {"USDT": ("6989.6", "0"), "BTC": ("0.05", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_quote_sized_market_buy_spends_at_most_the_amount(client: httpx.AsyncClient, runtime: Runtime,
                                                                  market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="market", quote_quantity="3000")
    # 0.04 @ 60000 = 2400, then 600 buys 0.00999 @ 60010 (step 0.00001, rounded down) = 599.4999
    assert (order["status"], order["filled_quantity"], order["filled_quote_quantity"]) == (
        "filled", "0.04999", "2999.4999")
    assert order["fees"] == "2.9994999"
    assert await balances(client, tokens, account) == {"USDT": ("6997.5006001", "0"), "BTC": ("0.04999", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_limit_buy_rests_with_its_reservation_and_a_cancel_releases_it_exactly(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900.01", quantity="0.05",
                           client_order_id="my-limit-1")
    # 0.05 × 59900.01 × 1.001 = 2997.9955005 (the larger fee rate on top)
    assert (order["status"], order["reserved"], order["reserved_asset"], order["client_order_id"]) == (
        "new", "2997.9955005", "USDT", "my-limit-1")
    assert await balances(client, tokens, account) == {"USDT": ("7002.0044995", "2997.9955005")}
    listed = (await client.get(ORDERS, params={"status": "open"}, headers=bearer(tokens))).json()
    assert [o["id"] for o in listed["items"]] == [order["id"]]
    refused = await client.post(f"{ACCOUNTS_PATH}/{account}/reset", headers=bearer(tokens))
    assert refused.status_code == 409 and refused.json()["code"] == "open_orders"
    canceled = await client.delete(f"{ORDERS}/{order['id']}", headers=bearer(tokens))
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["cancel_reason"], canceled.json()["reserved"]) == (
        "canceled", "canceled_by_user", "0")
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    again = await client.delete(f"{ORDERS}/{order['id']}", headers=bearer(tokens))
    assert again.status_code == 409 and again.json()["code"] == "order_not_open"
    history = (await client.get(f"{ORDERS}/{order['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in history] == ["received", "accepted", "canceled"]
    await assert_ledger_consistent(runtime, account)


ACCOUNTS_PATH = "/api/trading/accounts"


async def test_a_marketable_limit_takes_then_rests_and_never_stays_new(client: httpx.AsyncClient, runtime: Runtime,
                                                                       market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="60005", quantity="0.1")
    # takes 0.04 @ 60000 (a taker, better than its limit), rests 0.06 @ 60005
    assert (order["status"], order["filled_quantity"], order["average_fill_price"], order["fees"]) == (
        "partially_filled", "0.04", "60000", "2.4")
    # reserved 0.1 × 60005 × 1.001 = 6006.5005, minus the fill's 2400 + 2.4
    assert order["reserved"] == "3604.1005"
    assert await balances(client, tokens, account) == {"USDT": ("3993.4995", "3604.1005"), "BTC": ("0.04", "0")}
    canceled = (await client.delete(f"{ORDERS}/{order['id']}", headers=bearer(tokens))).json()
    assert (canceled["status"], canceled["filled_quantity"]) == ("canceled", "0.04")
    assert await balances(client, tokens, account) == {"USDT": ("7597.6", "0"), "BTC": ("0.04", "0")}
    await assert_ledger_consistent(runtime, account)


@pytest.mark.parametrize("body, outcome", [
    # IOC: takes what the book has up to its limit, cancels the rest
    ({"time_in_force": "ioc", "price": "60005", "quantity": "0.1"},
     ("canceled", "ioc_remainder", "0.04", {"USDT": ("7597.6", "0"), "BTC": ("0.04", "0")})),
    # IOC with nothing at its limit: canceled unfilled, nothing moved
    ({"time_in_force": "ioc", "price": "59999.99", "quantity": "0.1"},
     ("canceled", "ioc_remainder", "0", {"USDT": ("10000", "0")})),
    # FOK that the depth within the limit cannot fill: canceled unfilled
    ({"time_in_force": "fok", "price": "60005", "quantity": "0.1"},
     ("canceled", "fok_unfillable", "0", {"USDT": ("10000", "0")})),
    # FOK that fits: filled completely, 0.04 @ 60000 + 0.01 @ 60010
    ({"time_in_force": "fok", "price": "60010", "quantity": "0.05"},
     ("filled", None, "0.05", {"USDT": ("6996.8999", "0"), "BTC": ("0.05", "0")})),
    # post-only that would take: rejected, never rested nor partly taken
    ({"post_only": True, "price": "60000", "quantity": "0.05"},
     ("rejected", None, "0", {"USDT": ("10000", "0")})),
    # post-only below the ask: rests as a maker
    ({"post_only": True, "price": "59999.99", "quantity": "0.05"},
     ("new", None, "0", {"USDT": ("6997.0005005", "3002.9994995")})),
])
async def test_time_in_force_and_post_only_outcomes(client: httpx.AsyncClient, runtime: Runtime, market: Market,
                                                    body: dict[str, Any], outcome: tuple[Any, ...]) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", **body)
    status, reason, filled, expected_balances = outcome
    assert (order["status"], order["filled_quantity"]) == (status, filled)
    if status == "canceled":
        assert order["cancel_reason"] == reason
    if status == "rejected":
        assert order["reject_code"] == "post_only_would_take"
    assert await balances(client, tokens, account) == expected_balances
    await assert_ledger_consistent(runtime, account)


async def test_a_market_order_larger_than_the_book_fills_what_is_there(client: httpx.AsyncClient, runtime: Runtime,
                                                                       market: Market) -> None:
    _, tokens = await new_user(client)
    await deposit(client, tokens, await default_account(client, tokens), "USDT", "2000")
    order = await place_ok(client, tokens, side="buy", type="market", quantity="0.5")
    assert (order["status"], order["cancel_reason"], order["filled_quantity"]) == (
        "canceled", "insufficient_depth", "0.19")
    await assert_ledger_consistent(runtime, await default_account(client, tokens))


# --- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, code", [
    ({"symbol": "NOPE/USDT", "side": "buy", "type": "market", "quantity": "1"}, 404, "unknown_symbol"),
    ({"side": "buy", "type": "limit", "price": "60000.005", "quantity": "0.01"}, 422, "invalid_tick_size"),
    ({"side": "buy", "type": "limit", "price": "60000", "quantity": "0.000001"}, 422, "invalid_step_size"),
    ({"side": "buy", "type": "limit", "price": "60000", "quantity": "0.00005"}, 422, "below_min_notional"),
    ({"side": "buy", "type": "market", "quantity": "0.00001"}, 422, "below_min_notional"),
    ({"side": "buy", "type": "stop", "stop_price": "61000.001", "quantity": "0.01"}, 422, "invalid_tick_size"),
    ({"side": "buy", "type": "limit", "quantity": "0.01"}, 422, "price_required"),
    ({"side": "buy", "type": "market", "price": "60000", "quantity": "0.01"}, 422, "price_not_allowed"),
    ({"side": "buy", "type": "stop", "quantity": "0.01"}, 422, "stop_price_required"),
    ({"side": "sell", "type": "trailing_stop", "quantity": "0.01"}, 422, "invalid_trail"),
    ({"side": "sell", "type": "trailing_stop", "quantity": "0.01", "trail_percent": "1.123456789"}, 422,
     "invalid_trail"),
    ({"side": "buy", "type": "limit", "price": "60000", "quote_quantity": "100"}, 422, "quote_quantity_requires_market"),
    ({"side": "buy", "type": "limit", "price": "59000", "quantity": "0.01", "post_only": True,
      "time_in_force": "ioc"}, 422, "invalid_post_only"),
    ({"side": "buy", "type": "market"}, 422, "invalid_quantity"),
    ({"side": "buy", "type": "market", "quantity": "0"}, 422, "validation_error"),
    ({"side": "buy", "type": "market", "quantity": "0.1", "user_id": "x"}, 422, "validation_error"),
    ({"side": "buy", "type": "teleport", "quantity": "0.1"}, 422, "validation_error"),
    ({"side": "sell", "type": "market", "quantity": "0.1"}, 422, "insufficient_position"),
    ({"side": "sell", "type": "limit", "price": "60000", "quantity": "0.1"}, 422, "insufficient_position"),
    ({"side": "buy", "type": "market", "quantity": "0.19", "account_id": "00000000-0000-0000-0000-000000000001"},
     404, "account_not_found"),
    ({"side": "buy", "type": "limit", "price": "59000", "quantity": "0.2"}, 422, "insufficient_funds"),
])
async def test_refused_orders_write_nothing(client: httpx.AsyncClient, runtime: Runtime, market: Market,
                                            body: dict[str, Any], status: int, code: str) -> None:
    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    before = len(await user_events(runtime, profile["id"]))
    resp = await place(client, tokens, **body)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code, resp.text
    if code.startswith("invalid_") and code.endswith("_size"):
        assert resp.json()["nearest"], resp.text  # the nearest valid values, never silently rounded
    assert (await client.get(ORDERS, headers=bearer(tokens))).json()["items"] == []
    assert len(await user_events(runtime, profile["id"])) == before
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}


async def test_selling_more_than_the_free_holding_is_insufficient_position(client: httpx.AsyncClient,
                                                                          runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await deposit(client, tokens, account, "BTC", "0.1")
    resting = await place_ok(client, tokens, side="sell", type="limit", price="61000", quantity="0.06")
    assert resting["reserved"] == "0.06" and resting["reserved_asset"] == "BTC"
    resp = await place(client, tokens, side="sell", type="market", quantity="0.05")  # 0.04 free: 0.06 is locked
    assert resp.status_code == 422 and resp.json()["code"] == "insufficient_position", resp.text
    assert (resp.json()["available"], resp.json()["requested"]) == ("0.04", "0.05")
    assert (await place(client, tokens, side="sell", type="market", quantity="0.04")).status_code == 201
    await assert_ledger_consistent(runtime, account)


async def test_client_order_id_is_unique_per_account_forever(client: httpx.AsyncClient, runtime: Runtime,
                                                             market: Market) -> None:
    _, tokens = await new_user(client)
    first = await place_ok(client, tokens, side="buy", type="market", quantity="0.01", client_order_id="abc.1")
    assert first["status"] == "filled"
    again = await place(client, tokens, side="buy", type="market", quantity="0.01", client_order_id="abc.1")
    assert again.status_code == 409 and again.json()["code"] == "duplicate_client_order_id", again.text
    # another user may use the same client order id
    _, other = await new_user(client)
    assert (await place(client, other, side="buy", type="market", quantity="0.01",
                        client_order_id="abc.1")).status_code == 201
    listed = (await client.get(ORDERS, headers=bearer(tokens))).json()["items"]
    assert [o["id"] for o in listed] == [first["id"]]


async def test_no_order_book_yet_is_503_for_market_orders(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    resp = await place(client, tokens, side="buy", type="market", quantity="0.01", symbol="ETH/USDT")
    assert resp.status_code == 503 and resp.json()["code"] == "market_data_unavailable", resp.text


async def test_listing_filters_and_pages(client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    ids = [(await place_ok(client, tokens, side="buy", type="limit", price=f"5900{n}", quantity="0.01"))["id"]
           for n in range(3)]
    filled = await place_ok(client, tokens, side="buy", type="market", quantity="0.01")
    page = (await client.get(ORDERS, params={"limit": 2}, headers=bearer(tokens))).json()
    assert [o["id"] for o in page["items"]] == [filled["id"], ids[2]] and page["next_cursor"]
    rest = (await client.get(ORDERS, params={"limit": 2, "cursor": page["next_cursor"]},
                             headers=bearer(tokens))).json()
    assert [o["id"] for o in rest["items"]] == [ids[1], ids[0]] and rest["next_cursor"] is None
    by_status = (await client.get(ORDERS, params={"status": "filled", "symbol": "btc-usdt"},
                                  headers=bearer(tokens))).json()
    assert [o["id"] for o in by_status["items"]] == [filled["id"]]
    bad = await client.get(ORDERS, params={"cursor": "nonsense!"}, headers=bearer(tokens))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    fills = (await client.get("/api/trading/fills", params={"limit": 1}, headers=bearer(tokens))).json()
    assert len(fills["items"]) == 1 and fills["items"][0]["order_id"] == filled["id"]


async def test_risk_refuses_a_fat_finger_limit_and_a_reduce_only_buy(client: httpx.AsyncClient, runtime: Runtime,
                                                                     market: Market) -> None:
    await market.trade("60000", "0.01")  # the last price the collar is measured from
    _, tokens = await new_user(client)
    far = await place(client, tokens, side="buy", type="limit", price="66000.01", quantity="0.01")
    assert far.status_code == 422 and far.json()["code"] == "price_outside_collar", far.text
    assert far.json()["bound"] == "66000"
    near = await place(client, tokens, side="buy", type="limit", price="66000", quantity="0.01")
    assert near.status_code == 201 and near.json()["status"] == "filled"  # within 10 %: takes at 60000
    reduce = await place(client, tokens, side="buy", type="market", quantity="0.01", reduce_only=True)
    assert reduce.status_code == 422 and reduce.json()["code"] == "reduce_only_would_increase"
