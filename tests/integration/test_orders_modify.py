"""PUT /api/trading/orders/{id}: modify price / quantity / stop / trail of an open order with the
reservation adjusted exactly, optimistic revisions, the matching owner applying it at the new
revision, and a modify racing a fill. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
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
    place_ok,
    wait_for,
    wait_order,
    wait_working,
)
from tradepilot.runtime import Runtime
from tradepilot.trading import ledger, order_actions
from tradepilot.trading.order_models import Order
from tradepilot.trading.order_schemas import OrderModify


async def modify(client: httpx.AsyncClient, tokens: dict, order_id: str, **body: Any) -> httpx.Response:
    return await client.put(f"{ORDERS}/{order_id}", json=body, headers=bearer(tokens))


async def modify_ok(client: httpx.AsyncClient, tokens: dict, order_id: str, **body: Any) -> dict[str, Any]:
    resp = await modify(client, tokens, order_id, **body)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def wait_revision(runtime: Runtime, order_id: str, revision: int) -> None:
    owner = runtime.services["matching"]
    await wait_for(lambda: owner.working_revision(order_id) == revision,
                   f"the matching owner to work {order_id} at revision {revision}")


async def history(client: httpx.AsyncClient, tokens: dict, order_id: str) -> list[dict[str, Any]]:
    return (await client.get(f"{ORDERS}/{order_id}/events", headers=bearer(tokens))).json()["items"]  # type: ignore[no-any-return]


async def test_modify_down_and_up_moves_exactly_the_difference_through_the_ledger(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    assert order["reserved"] == "2997.995"  # 0.05 × 59900 × 1.001
    await wait_working(runtime, order["id"])

    lower = await modify_ok(client, tokens, order["id"], price="59800")
    # 0.05 × 59800 × 1.001 = 2992.99: 5.005 released
    assert (lower["id"], lower["revision"], lower["price"], lower["reserved"]) == (order["id"], 1, "59800", "2992.99")
    assert await balances(client, tokens, account) == {"USDT": ("7007.01", "2992.99")}

    bigger = await modify_ok(client, tokens, order["id"], quantity="0.08", revision=1)
    # 0.08 × 59800 × 1.001 = 4788.784: 1795.794 more locked
    assert (bigger["revision"], bigger["quantity"], bigger["reserved"]) == (2, "0.08", "4788.784")
    assert await balances(client, tokens, account) == {"USDT": ("5211.216", "4788.784")}

    stale = await modify(client, tokens, order["id"], quantity="0.03", revision=1)
    assert stale.status_code == 409 and stale.json()["code"] == "revision_mismatch", stale.text
    assert stale.json()["revision"] == 2

    smaller = await modify_ok(client, tokens, order["id"], quantity="0.03", revision=2)
    assert (smaller["revision"], smaller["reserved"]) == (3, "1795.794")  # 0.03 × 59800 × 1.001
    assert await balances(client, tokens, account) == {"USDT": ("8204.206", "1795.794")}
    events = await history(client, tokens, order["id"])
    assert [(e["type"], e["detail"].get("revision")) for e in events] == [
        ("received", None), ("accepted", None), ("modified", 1), ("modified", 2), ("modified", 3)]
    assert events[2]["detail"]["lost_priority"] is True and events[4]["detail"]["lost_priority"] is False
    await assert_ledger_consistent(runtime, account)

    # the owner works it at revision 3: a trade at the new price fills exactly what is reserved
    await wait_revision(runtime, order["id"], 3)
    await market.trade("59900", "1")  # the old price: no longer reached
    await market.trade("59800", "1")
    done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the fill")
    assert (done["filled_quantity"], done["average_fill_price"], done["fees"], done["reserved"]) == (
        "0.03", "59800", "1.794", "0")
    assert await balances(client, tokens, account) == {"USDT": ("8204.206", "0"), "BTC": ("0.03", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_time_priority_is_kept_by_a_smaller_quantity_and_lost_by_a_larger_one(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, first = await new_user(client)
    _, second = await new_user(client)
    a = await place_ok(client, first, side="buy", type="limit", price="59900", quantity="0.05")
    b = await place_ok(client, second, side="buy", type="limit", price="59900", quantity="0.05")
    await wait_working(runtime, a["id"])
    await wait_working(runtime, b["id"])
    await modify_ok(client, first, a["id"], quantity="0.04")  # down: keeps its place, ahead of b
    await wait_revision(runtime, a["id"], 1)
    await market.trade("59900", "0.01")
    await wait_order(client, first, a["id"], lambda o: o["filled_quantity"] == "0.01", "a to fill first")
    assert (await get_order(client, second, b["id"]))["filled_quantity"] == "0"
    await modify_ok(client, first, a["id"], quantity="0.06")  # up: to the back, behind b
    await wait_revision(runtime, a["id"], 2)
    await market.trade("59900", "0.01")
    await wait_order(client, second, b["id"], lambda o: o["filled_quantity"] == "0.01", "b to fill now")
    assert (await get_order(client, first, a["id"]))["filled_quantity"] == "0.01"


async def test_a_new_limit_that_crosses_the_book_takes_like_a_new_order(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.1")
    assert order["reserved"] == "5995.99"
    moved = await modify_ok(client, tokens, order["id"], price="60010")
    # reserved 0.1 × 60010 × 1.001 = 6007.001 (11.011 more), then takes 0.04 @ 60000 and 0.05 @ 60010
    # (2402.4 + 3003.5005 paid from it); 0.01 rests at 60010 with 601.1005 still reserved
    assert (moved["status"], moved["revision"], moved["filled_quantity"], moved["average_fill_price"]) == (
        "partially_filled", 1, "0.09", "60005.555555555555555556")
    assert (moved["fees"], moved["reserved"]) == ("5.4005", "601.1005")
    assert await balances(client, tokens, account) == {"USDT": ("3992.999", "601.1005"), "BTC": ("0.09", "0")}
    assert [e["type"] for e in await history(client, tokens, order["id"])] == [
        "received", "accepted", "modified", "fill", "fill"]
    await assert_ledger_consistent(runtime, account)
    # the owner takes the filled state over from the database, and fills the rest once
    await wait_revision(runtime, order["id"], 1)
    await market.trade("60010", "1")
    done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the rest")
    assert (done["filled_quantity"], done["reserved"], done["fees"]) == ("0.1", "0", "6.0006")
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]}, headers=bearer(tokens))).json()
    assert sorted(f["trade_id"] for f in fills["items"]) == [f"{order['id']}-{n}" for n in (1, 2, 3)]
    await assert_ledger_consistent(runtime, account)


async def test_a_stop_and_a_trailing_stop_rearm_at_their_new_levels(client: httpx.AsyncClient, runtime: Runtime,
                                                                   market: Market) -> None:
    await market.trade("60000", "0.01")
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await deposit(client, tokens, account, "BTC", "0.1")
    stop = await place_ok(client, tokens, side="sell", type="stop", stop_price="59000", quantity="0.05")
    trail = await place_ok(client, tokens, side="sell", type="trailing_stop", trail_amount="100", quantity="0.05")
    assert trail["stop_price"] == "59900"
    await wait_working(runtime, stop["id"])
    await wait_working(runtime, trail["id"])
    raised = await modify_ok(client, tokens, stop["id"], stop_price="59500")
    assert (raised["stop_price"], raised["reserved"], raised["revision"]) == ("59500", "0.05", 1)
    tighter = await modify_ok(client, tokens, trail["id"], trail_percent="0.05")
    # from the water mark 60000: 60000 × 99.95 / 100 = 59970, the amount replaced by the percentage
    assert (tighter["stop_price"], tighter["trail_amount"], tighter["trail_percent"]) == ("59970", None, "0.05")
    await wait_revision(runtime, stop["id"], 1)
    await wait_revision(runtime, trail["id"], 1)
    await market.book([("59400", "1")], [("60010", "1")])
    await market.trade("59975", "0.01")  # above both new levels: nothing
    await market.trade("59970", "0.01")  # the trailing stop's new level
    done = await wait_order(client, tokens, trail["id"], lambda o: o["status"] == "filled", "the trailing stop")
    assert done["average_fill_price"] == "59400"
    assert (await get_order(client, tokens, stop["id"]))["status"] == "new"
    await market.trade("59500", "0.01")  # the stop's new level (the old one, 59000, was never reached)
    sold = await wait_order(client, tokens, stop["id"], lambda o: o["status"] == "filled", "the stop")
    assert (sold["average_fill_price"], sold["fees"]) == ("59400", "2.97")
    # 10000 + 2 × (2970 − 2.97)
    assert await balances(client, tokens, account) == {"USDT": ("15934.06", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)


@pytest.mark.parametrize("body, status, code", [
    ({}, 422, "nothing_to_modify"),
    ({"price": "59800.001"}, 422, "invalid_tick_size"),
    ({"quantity": "0.000001"}, 422, "invalid_step_size"),
    ({"price": "59800", "user_id": "x"}, 422, "validation_error"),
    ({"quantity": "1"}, 422, "insufficient_funds"),
    ({"quantity": "0.01"}, 422, "quantity_below_filled"),
    ({"stop_price": "59000"}, 422, "stop_price_not_allowed"),
    ({"trail_amount": "10"}, 422, "trail_not_allowed"),
    ({"price": "66000.01"}, 422, "price_outside_collar"),
    ({"price": "59800", "revision": 3}, 409, "revision_mismatch"),
])
async def test_refused_modifies_change_nothing(client: httpx.AsyncClient, runtime: Runtime, market: Market,
                                               body: dict[str, Any], status: int, code: str) -> None:
    await market.trade("60000", "0.01")  # the collar's reference
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    await wait_working(runtime, order["id"])
    await market.trade("59900", "0.02")  # partially filled: 0.02 of 0.05
    before = await wait_order(client, tokens, order["id"], lambda o: o["filled_quantity"] == "0.02", "the fill")
    money = await balances(client, tokens, account)
    resp = await modify(client, tokens, order["id"], **body)
    assert resp.status_code == status and resp.json()["code"] == code, resp.text
    assert await get_order(client, tokens, order["id"]) == before
    assert await balances(client, tokens, account) == money
    await assert_ledger_consistent(runtime, account)


async def test_modify_of_a_final_order_is_409_and_of_someone_elses_404(client: httpx.AsyncClient, runtime: Runtime,
                                                                       market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    filled = await place_ok(client, tokens, side="buy", type="market", quantity="0.01")
    resp = await modify(client, tokens, filled["id"], quantity="0.02")
    assert resp.status_code == 409 and resp.json()["code"] == "order_not_open", resp.text
    sell = await place_ok(client, tokens, side="sell", type="limit", price="61000", quantity="0.01")
    more = await modify(client, tokens, sell["id"], quantity="0.02")  # only 0.01 BTC held
    assert more.status_code == 422 and more.json()["code"] == "insufficient_position", more.text
    assert (more.json()["available"], more.json()["requested"]) == ("0", "0.01")
    _, stranger = await new_user(client)
    for oid in (sell["id"], filled["id"]):
        theirs = await modify(client, stranger, oid, price="61500")
        assert theirs.status_code == 404 and theirs.json()["code"] == "order_not_found"
    assert (await get_order(client, tokens, sell["id"]))["revision"] == 0
    await assert_ledger_consistent(runtime, account)


async def test_a_halt_refuses_modifies(client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    from tests.integration.admin_support import make_admin

    _, admin = await make_admin(client, runtime)
    _, tokens = await new_user(client)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    await client.put("/api/admin/trading/halt", json={"reason": "maintenance"}, headers=bearer(admin))
    resp = await modify(client, tokens, order["id"], price="59800")
    assert resp.status_code == 503 and resp.json()["code"] == "trading_halted"


async def test_the_fill_wins_or_the_modify_wins_never_both(client: httpx.AsyncClient, runtime: Runtime,
                                                          market: Market) -> None:
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    # in sequence, each way round
    filled_first = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.01")
    await wait_working(runtime, filled_first["id"])
    await market.trade("59900", "1")
    await wait_order(client, tokens, filled_first["id"], lambda o: o["status"] == "filled", "the fill")
    late = await modify(client, tokens, filled_first["id"], price="59800")
    assert late.status_code == 409 and late.json()["code"] == "order_not_open"
    modified_first = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.01")
    await wait_working(runtime, modified_first["id"])
    await modify_ok(client, tokens, modified_first["id"], price="59800")
    await wait_revision(runtime, modified_first["id"], 1)
    await market.trade("59900", "1")  # the old price does not fill the new order
    await market.trade("59850", "1")
    assert (await get_order(client, tokens, modified_first["id"]))["filled_quantity"] == "0"
    # and at the same moment, several times: one of the two, never both
    outcomes = []
    for _ in range(4):
        order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.01")
        await wait_working(runtime, order["id"])
        answer, _ = await asyncio.gather(modify(client, tokens, order["id"], price="59800"),
                                         market.trade("59900", "1"))
        await asyncio.sleep(0.3)  # let the owner settle whatever it was doing
        after = await get_order(client, tokens, order["id"])
        if answer.status_code == 200:
            # the modify won: whatever the owner matched at revision 0 was never written
            assert (after["revision"], after["price"], after["filled_quantity"]) == (1, "59800", "0"), after
            await wait_revision(runtime, order["id"], 1)
            outcomes.append("modify")
        else:
            assert answer.json()["code"] == "order_not_open", answer.text
            assert (after["revision"], after["price"], after["status"]) == (0, "59900", "filled"), after
            outcomes.append("fill")
        fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]},
                                  headers=bearer(tokens))).json()["items"]
        assert [f["price"] for f in fills] == (["59900"] if outcomes[-1] == "fill" else [])
        await assert_ledger_consistent(runtime, account)
    # the modified ones fill once, at their new price
    await market.trade("59800", "1")
    for order in (await client.get(ORDERS, params={"status": "open"}, headers=bearer(tokens))).json()["items"]:
        done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the new price")
        assert (done["average_fill_price"], done["revision"]) == ("59800", 1)
    await assert_ledger_consistent(runtime, account)
    assert len(outcomes) == 4


async def test_a_modify_committed_while_the_owner_writes_a_fill_at_the_old_revision_wins(
        client: httpx.AsyncClient, runtime: Runtime, market: Market) -> None:
    """Deterministically: the owner's engine has filled the order at revision 0 and waits for the
    account's lock, which a modify holds; the modify commits first, so the fill is never written."""
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.01")
    await wait_working(runtime, order["id"])
    owner, service = runtime.services["matching"], runtime.services["orders"]
    async with runtime.db.transaction() as session:
        await ledger.lock_account(session, uuid.UUID(account))
        await market.trade("59900", "1")
        # the owner's engine filled it and now waits for the lock to write the fill
        await wait_for(lambda: owner.engine.order(order["id"]) is None, "the owner's engine to fill it")
        row = await session.get(Order, uuid.UUID(order["id"]))
        await order_actions.modify(service, session, row, OrderModify(price=Decimal("59800")))
    await wait_revision(runtime, order["id"], 1)  # the stale fill was dropped; re-read at revision 1
    after = await get_order(client, tokens, order["id"])
    assert (after["status"], after["revision"], after["price"], after["filled_quantity"]) == ("new", 1, "59800", "0")
    assert await balances(client, tokens, account) == {"USDT": ("9401.402", "598.598")}  # 0.01 × 59800 × 1.001
    await market.trade("59800", "1")
    done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the fill at 59800")
    assert (done["average_fill_price"], done["fees"]) == ("59800", "0.598")
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]}, headers=bearer(tokens))).json()
    assert [(f["price"], f["trade_id"]) for f in fills["items"]] == [("59800", f"{order['id']}-1")]
    await assert_ledger_consistent(runtime, account)
