"""Brackets and OCO through the API: exits armed by the entry's fills and sized by them, the first
exit to fill or trigger cancelling the other, one shared reservation, restarts. SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.admin_support import client_from
from tests.integration.orders_support import (
    ASKS,
    BIDS,
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
    wait_order,
    wait_working,
)
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.runtime import Runtime


def summary(order: dict[str, Any]) -> tuple[Any, ...]:
    return order["group_role"], order["type"], order["status"], order["quantity"], order["reserved"]


async def history(client: httpx.AsyncClient, tokens: dict, order_id: str) -> list[str]:
    items = (await client.get(f"{ORDERS}/{order_id}/events", headers=bearer(tokens))).json()["items"]
    return [e["type"] for e in items]


async def test_a_bracket_arms_its_exits_on_the_entry_fills_and_the_take_profit_cancels_the_stop(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    entry = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05",
                           take_profit={"price": "61000"}, stop_loss={"stop_price": "59000"})
    assert (entry["group_kind"], entry["group_role"], entry["status"], entry["reserved"]) == (
        "bracket", "entry", "new", "2997.995")
    tp, sl = entry["legs"]
    assert summary(tp) == ("take_profit", "limit", "pending_new", "0", "0")
    assert summary(sl) == ("stop_loss", "stop", "pending_new", "0", "0")
    assert tp["group_id"] == sl["group_id"] == entry["group_id"] and (tp["price"], sl["stop_price"]) == (
        "61000", "59000")
    listed = (await client.get(ORDERS, params={"group_id": entry["group_id"]}, headers=bearer(tokens))).json()
    assert {o["id"] for o in listed["items"]} == {entry["id"], tp["id"], sl["id"]}
    for order in (entry, tp, sl):
        await wait_working(runtime, order["id"])  # the owner arms the waiting exits too

    await market.trade("59900", "0.02")  # the entry fills 0.02: the exits wake up, sized 0.02
    await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "new", "the exits to activate")
    tp_now, sl_now = await get_order(client, tokens, tp["id"]), await get_order(client, tokens, sl["id"])
    # one reservation for both exits, on the take-profit: the 0.02 BTC bought, locked once
    assert summary(tp_now) == ("take_profit", "limit", "new", "0.02", "0.02")
    assert summary(sl_now) == ("stop_loss", "stop", "new", "0.02", "0")
    assert await balances(client, tokens, account) == {"USDT": ("7002.005", "1798.797"), "BTC": ("0", "0.02")}
    await assert_ledger_consistent(runtime, account)

    await market.trade("59800", "1")  # the rest of the entry: the exits grow to 0.05
    await wait_order(client, tokens, tp["id"], lambda o: o["quantity"] == "0.05", "the exits to grow")
    assert await balances(client, tokens, account) == {"USDT": ("7002.005", "0"), "BTC": ("0", "0.05")}
    assert (await get_order(client, tokens, entry["id"]))["status"] == "filled"

    await market.trade("61000", "0.02")  # the take-profit fills 0.02: the stop-loss is canceled
    canceled = await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "canceled", "the stop to go")
    assert (canceled["cancel_reason"], canceled["reserved"]) == ("oco_sibling_filled", "0")
    partial = await get_order(client, tokens, tp["id"])
    assert (partial["status"], partial["filled_quantity"], partial["reserved"]) == ("partially_filled", "0.02", "0.03")
    # 7002.005 + 1220 − 1.22
    assert await balances(client, tokens, account) == {"USDT": ("8220.785", "0"), "BTC": ("0", "0.03")}
    await assert_ledger_consistent(runtime, account)

    await market.trade("61500", "1")
    done = await wait_order(client, tokens, tp["id"], lambda o: o["status"] == "filled", "the take-profit")
    assert (done["average_fill_price"], done["fees"], done["reserved"]) == ("61000", "3.05", "0")
    assert await balances(client, tokens, account) == {"USDT": ("10048.955", "0"), "BTC": ("0", "0")}
    position = (await positions(client, tokens))["BTC/USDT"]
    assert (position["quantity"], position["realised_pnl"]) == ("0", "55")  # (61000 − 59900) × 0.05
    assert await history(client, tokens, sl["id"]) == ["received", "accepted", "updated", "updated", "canceled"]
    await assert_ledger_consistent(runtime, account)


async def test_a_market_entry_arms_its_exits_at_once_and_the_stop_loss_cancels_the_take_profit(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    entry = await place_ok(client, tokens, side="buy", type="market", quantity="0.05",
                           take_profit={"stop_price": "62000"}, stop_loss={"stop_price": "59500", "price": "59300"})
    # 0.04 @ 60000 + 0.01 @ 60010 = 3000.1, fees 3.0001
    assert (entry["status"], entry["filled_quote_quantity"], entry["fees"]) == ("filled", "3000.1", "3.0001")
    tp, sl = entry["legs"]
    assert summary(tp) == ("take_profit", "take_profit", "new", "0.05", "0.05")
    assert summary(sl) == ("stop_loss", "stop_limit", "new", "0.05", "0")
    assert await balances(client, tokens, account) == {"USDT": ("6996.8999", "0"), "BTC": ("0", "0.05")}
    resp = await place(client, tokens, side="sell", type="market", quantity="0.01")  # the coins are protected
    assert resp.status_code == 422 and resp.json()["code"] == "insufficient_position"
    await wait_working(runtime, tp["id"])
    await wait_working(runtime, sl["id"])
    await market.book([("59400", "1")], [("59600", "1")])
    await market.trade("59450", "0.01")  # through the stop: a limit sell at 59300 takes 0.05 @ 59400
    done = await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "filled", "the stop-loss")
    assert (done["average_fill_price"], done["fees"]) == ("59400", "2.97")
    other = await get_order(client, tokens, tp["id"])
    assert (other["status"], other["cancel_reason"], other["reserved"]) == ("canceled", "oco_sibling_triggered", "0")
    # 6996.8999 + 2970 − 2.97
    assert await balances(client, tokens, account) == {"USDT": ("9963.9299", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_an_oco_on_a_holding_reserves_it_once_and_the_triggered_leg_cancels_the_other(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await deposit(client, tokens, account, "BTC", "0.1")
    first = await place_ok(client, tokens, type="oco", side="sell", quantity="0.1", client_order_id="exit-1",
                           take_profit={"price": "61000"},
                           stop_loss={"stop_price": "59000", "price": "58900", "client_order_id": "exit-1-sl"})
    (sl,) = first["legs"]
    assert (first["group_kind"], first["client_order_id"], sl["client_order_id"]) == ("oco", "exit-1", "exit-1-sl")
    assert summary(first) == ("take_profit", "limit", "new", "0.1", "0.1")
    assert summary(sl) == ("stop_loss", "stop_limit", "new", "0.1", "0")
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0"), "BTC": ("0", "0.1")}  # once
    await wait_working(runtime, first["id"])
    await wait_working(runtime, sl["id"])
    await market.trade("59000", "0.01")  # fires the stop-limit: it takes the bids down to 58900
    done = await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "filled", "the stop leg")
    # 0.03 @ 59990 + 0.05 @ 59980 + 0.02 @ 59970 = 5998.1, fee 5.9981
    assert (done["filled_quote_quantity"], done["fees"]) == ("5998.1", "5.9981")
    limit_leg = await get_order(client, tokens, first["id"])
    assert (limit_leg["status"], limit_leg["cancel_reason"]) == ("canceled", "oco_sibling_triggered")
    assert await balances(client, tokens, account) == {"USDT": ("15992.1019", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_buy_oco_reserves_its_dearer_leg_once_and_cancelling_a_leg_cancels_both(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    first = await place_ok(client, tokens, type="oco", side="buy", quantity="0.05",
                           take_profit={"price": "59000"}, stop_loss={"stop_price": "61000"})
    (stop,) = first["legs"]
    # max(0.05 × 59000 × 1.001, 0.05 × 61000 × 1.001) = 3053.05, held by the limit leg
    assert (first["reserved"], stop["reserved"]) == ("3053.05", "0")
    assert await balances(client, tokens, account) == {"USDT": ("6946.95", "3053.05")}
    await wait_working(runtime, stop["id"])
    changed = await client.put(f"{ORDERS}/{stop['id']}", json={"stop_price": "62000"}, headers=bearer(tokens))
    assert changed.status_code == 200, changed.text
    # the dearer leg is dearer still: 0.05 × 62000 × 1.001 = 3103.1 (50.05 more, on the holder)
    assert (await get_order(client, tokens, first["id"]))["reserved"] == "3103.1"
    assert await balances(client, tokens, account) == {"USDT": ("6896.9", "3103.1")}
    await assert_ledger_consistent(runtime, account)
    canceled = await client.delete(f"{ORDERS}/{stop['id']}", headers=bearer(tokens))
    assert canceled.status_code == 200 and canceled.json()["cancel_reason"] == "canceled_by_user"
    other = await get_order(client, tokens, first["id"])
    assert (other["status"], other["cancel_reason"]) == ("canceled", "group_canceled")
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    await assert_ledger_consistent(runtime, account)
    events = [e.type for e in await user_events(runtime, profile["id"])]
    assert events[-3:] == ["balance.updated", "order.updated", "order.updated"]


async def test_a_bracket_exit_moves_its_price_but_not_its_size(client: httpx.AsyncClient, runtime: Runtime,
                                                               market: Market) -> None:
    _, tokens = await new_user(client)
    entry = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05",
                           take_profit={"price": "61000"}, stop_loss={"trail_amount": "500"})
    tp, sl = entry["legs"]
    assert sl["type"] == "trailing_stop"
    moved = await client.put(f"{ORDERS}/{tp['id']}", json={"price": "61500"}, headers=bearer(tokens))
    assert moved.status_code == 200 and (moved.json()["price"], moved.json()["revision"]) == ("61500", 1)
    sized = await client.put(f"{ORDERS}/{tp['id']}", json={"quantity": "0.01"}, headers=bearer(tokens))
    assert sized.status_code == 422 and sized.json()["code"] == "sized_by_entry"
    # an entry that never filled takes its exits with it
    gone = await client.delete(f"{ORDERS}/{entry['id']}", headers=bearer(tokens))
    assert gone.status_code == 200
    for leg in (tp, sl):
        after = await get_order(client, tokens, leg["id"])
        assert (after["status"], after["cancel_reason"]) == ("canceled", "bracket_entry_canceled")
    await assert_ledger_consistent(runtime, entry["account_id"])


@pytest.mark.parametrize("body, status, code", [
    ({"side": "sell", "type": "limit", "price": "61000", "quantity": "0.01", "stop_loss": {"stop_price": "59000"}},
     422, "bracket_entry_must_buy"),
    ({"side": "sell", "type": "oco", "quantity": "0.01", "take_profit": {"price": "61000"}}, 422,
     "oco_legs_required"),
    ({"side": "sell", "type": "oco", "quantity": "0.01", "take_profit": {"price": "61000"},
      "stop_loss": {"stop_price": "59000"}}, 422, "insufficient_position"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "0.01",
      "take_profit": {"trail_amount": "10"}}, 422, "invalid_exit_type"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "0.01",
      "stop_loss": {"price": "59000"}}, 422, "invalid_exit_type"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "0.01",
      "take_profit": {"price": "61000.005"}}, 422, "invalid_tick_size"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "0.01", "time_in_force": "ioc",
      "take_profit": {"price": "61000", "time_in_force": "ioc"}}, 422, "validation_error"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "1",
      "take_profit": {"price": "61000"}}, 422, "insufficient_funds"),
    ({"side": "buy", "type": "oco", "quantity": "0.01", "price": "59000", "take_profit": {"price": "59000"},
      "stop_loss": {"stop_price": "61000"}}, 422, "price_not_allowed"),
    ({"side": "buy", "type": "limit", "price": "59900", "quantity": "0.01", "client_order_id": "same",
      "take_profit": {"price": "61000", "client_order_id": "same"}}, 409, "duplicate_client_order_id"),
])
async def test_refused_groups_write_nothing(client: httpx.AsyncClient, runtime: Runtime, market: Market,
                                            body: dict[str, Any], status: int, code: str) -> None:
    profile, tokens = await new_user(client)
    account = await default_account(client, tokens)
    before = len(await user_events(runtime, profile["id"]))
    resp = await place(client, tokens, **body)
    assert resp.status_code == status and resp.json()["code"] == code, resp.text
    if code == "invalid_tick_size":
        assert resp.json()["field"] == "take_profit.price" and resp.json()["nearest"] == ["61000", "61000.01"]
    assert (await client.get(ORDERS, headers=bearer(tokens))).json()["items"] == []
    assert len(await user_events(runtime, profile["id"])) == before
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}


async def test_a_bracket_is_rearmed_after_a_restart(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = create_app(make_settings(database_url, data_dir=tmp_path / "var"))
    async with first.router.lifespan_context(first), client_from(first, "203.0.113.41") as client:
        runtime = first.state.runtime
        market = Market(runtime)
        await market.book(BIDS, ASKS)
        _, tokens = await new_user(client)
        account = await default_account(client, tokens)
        entry = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05",
                               take_profit={"price": "61000"}, stop_loss={"stop_price": "59000"})
        tp, sl = entry["legs"]
        await wait_working(runtime, sl["id"])
        await market.trade("59900", "0.02")  # 0.02 bought; the exits active at 0.02
        await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "new", "the exits to activate")
    second = create_app(make_settings(database_url, data_dir=tmp_path / "var"))
    async with second.router.lifespan_context(second), client_from(second, "203.0.113.42") as client:
        runtime = second.state.runtime
        for order in (entry, tp, sl):
            await wait_working(runtime, order["id"])  # the group, re-armed from the database
        market = Market(runtime)
        await market.book([("58900", "1")], [("59100", "1")])
        await market.trade("59850", "1")  # the rest of the entry, after the restart: the exits grow
        await wait_order(client, tokens, sl["id"], lambda o: o["quantity"] == "0.05", "the exits to grow")
        assert await balances(client, tokens, account) == {"USDT": ("7002.005", "0"), "BTC": ("0", "0.05")}
        await market.trade("58990", "0.01")  # through the stop-loss: sells 0.05 @ 58900
        done = await wait_order(client, tokens, sl["id"], lambda o: o["status"] == "filled", "the stop-loss")
        assert (done["average_fill_price"], done["fees"]) == ("58900", "2.945")
        other = await get_order(client, tokens, tp["id"])
        assert (other["status"], other["cancel_reason"]) == ("canceled", "oco_sibling_triggered")
        # 7002.005 + 2945 − 2.945
        assert await balances(client, tokens, account) == {"USDT": ("9944.06", "0"), "BTC": ("0", "0")}
        await assert_ledger_consistent(runtime, account)
