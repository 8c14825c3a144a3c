"""The matching owner: resting limits filled only by trades at or through their price, bounded
by traded volume; stops and trailing stops triggered by trades; day orders; restart. SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

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
    place_ok,
    positions,
    wait_for,
    wait_order,
    wait_working,
)
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.core.lease_models import LeaseRow
from tradepilot.runtime import Runtime


async def test_a_resting_limit_fills_only_on_trades_at_or_through_it_bounded_by_volume(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    assert order["status"] == "new" and order["reserved"] == "2997.995"  # 0.05 × 59900 × 1.001
    await wait_working(runtime, order["id"])
    await market.trade("59950", "5")  # above the limit: nothing
    await market.book([("59890", "1")], [("59895", "1")])  # a book through it fills nothing either
    await market.trade("59900", "0.02")  # at the limit: 0.02 of the 0.05, a maker at 59900
    partial = await wait_order(client, tokens, order["id"], lambda o: o["filled_quantity"] != "0",
                               "the first trade to fill the order")
    assert (partial["status"], partial["filled_quantity"], partial["average_fill_price"], partial["fees"]) == (
        "partially_filled", "0.02", "59900", "1.198")
    # 2997.995 − (1198 + 1.198)
    assert partial["reserved"] == "1798.797"
    assert await balances(client, tokens, account) == {"USDT": ("7002.005", "1798.797"), "BTC": ("0.02", "0")}
    await market.trade("59800", "1")  # through it: the rest, still at the limit price
    done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the order to fill")
    assert (done["filled_quantity"], done["average_fill_price"], done["fees"], done["reserved"]) == (
        "0.05", "59900", "2.995", "0")
    assert await balances(client, tokens, account) == {"USDT": ("7002.005", "0"), "BTC": ("0.05", "0")}
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]},
                              headers=bearer(tokens))).json()["items"]
    assert sorted((f["price"], f["quantity"], f["fee"], f["liquidity"]) for f in fills) == [
        ("59900", "0.02", "1.198", "maker"), ("59900", "0.03", "1.797", "maker")]
    assert all(f["market_trade_id"] for f in fills)
    position = (await positions(client, tokens))["BTC/USDT"]
    assert (position["quantity"], position["average_entry_price"]) == ("0.05", "59900")
    await assert_ledger_consistent(runtime, account)
    assert not runtime.services["matching"].working(order["id"])


async def test_a_sell_stop_fires_on_a_trade_through_it_and_walks_the_book(client: httpx.AsyncClient,
                                                                         runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await place_ok(client, tokens, side="buy", type="market", quantity="0.1")  # 0.1 at an average of 60007
    stop = await place_ok(client, tokens, side="sell", type="stop", stop_price="59000", quantity="0.1")
    assert (stop["status"], stop["reserved"], stop["reserved_asset"]) == ("new", "0.1", "BTC")
    await wait_working(runtime, stop["id"])
    await market.book([("58990", "0.05"), ("58980", "0.1")], [("59010", "1")])
    await market.trade("59500", "1")  # above the stop: nothing
    await market.trade("58995", "0.001")  # through it: it fires, a market sell against the current book
    done = await wait_order(client, tokens, stop["id"], lambda o: o["status"] == "filled", "the stop to fill")
    # 0.05 @ 58990 + 0.05 @ 58980 = 5898.5, fee 5.8985
    assert (done["filled_quote_quantity"], done["average_fill_price"], done["fees"]) == ("5898.5", "58985", "5.8985")
    history = (await client.get(f"{ORDERS}/{stop['id']}/events", headers=bearer(tokens))).json()["items"]
    assert [e["type"] for e in history] == ["received", "accepted", "triggered", "fill", "fill"]
    assert history[2]["detail"]["trade_price"] == "58995"
    position = (await positions(client, tokens))["BTC/USDT"]
    # (58990 − 60007) × 0.05 + (58980 − 60007) × 0.05 = −50.85 − 51.35
    assert (position["quantity"], position["average_entry_price"], position["realised_pnl"]) == ("0", None, "-102.2")
    # 10000 − 6006.7007 + 5898.5 − 5.8985
    assert await balances(client, tokens, account) == {"USDT": ("9885.9008", "0"), "BTC": ("0", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_trailing_stop_follows_the_high_water_mark(client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    await market.trade("60000", "0.01")  # the last price the trail starts from
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    await deposit(client, tokens, account, "BTC", "0.02")
    trail = await place_ok(client, tokens, side="sell", type="trailing_stop", trail_amount="100", quantity="0.02")
    assert (trail["status"], trail["stop_price"]) == ("new", "59900")
    await wait_working(runtime, trail["id"])
    await market.trade("60500", "0.01")  # a new high: the stop moves to 60400
    moved = await wait_order(client, tokens, trail["id"], lambda o: o["stop_price"] == "60400", "the stop to move")
    assert moved["status"] == "new"
    await market.book([("60390", "1")], [("60410", "1")])
    await market.trade("60450", "0.01")  # above the stop: nothing
    await market.trade("60400", "0.01")  # at the stop: fires, sells 0.02 @ 60390
    done = await wait_order(client, tokens, trail["id"], lambda o: o["status"] == "filled", "the trailing stop")
    assert (done["average_fill_price"], done["fees"]) == ("60390", "1.2078")
    types = [e["type"] for e in (await client.get(f"{ORDERS}/{trail['id']}/events",
                                                  headers=bearer(tokens))).json()["items"]]
    assert types == ["received", "accepted", "stop_moved", "triggered", "fill"]
    await assert_ledger_consistent(runtime, account)


async def test_a_cancel_that_wins_the_race_wins(client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    await wait_working(runtime, order["id"])
    canceled = await client.delete(f"{ORDERS}/{order['id']}", headers=bearer(tokens))
    assert canceled.status_code == 200
    await market.trade("59800", "1")  # whether or not the owner heard of the cancel yet: nothing fills
    await wait_for(lambda: not runtime.services["matching"].working(order["id"]), "the owner to drop the order")
    after = await get_order(client, tokens, order["id"])
    assert (after["status"], after["filled_quantity"]) == ("canceled", "0")
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    await assert_ledger_consistent(runtime, account)


async def test_a_resting_limit_a_stop_and_a_trailing_stop_fill_after_a_restart(database_url: str,
                                                                              tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url, data_dir=tmp_path / "var")
    first = create_app(settings)
    async with first.router.lifespan_context(first), client_from(first, "203.0.113.21") as client:
        runtime = first.state.runtime
        market = Market(runtime)
        await market.book(BIDS, ASKS)
        await market.trade("60000", "0.01")
        _, tokens = await new_user(client)
        account = await default_account(client, tokens)
        await deposit(client, tokens, account, "BTC", "0.12")
        limit = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
        stop = await place_ok(client, tokens, side="sell", type="stop", stop_price="59000", quantity="0.1")
        trail = await place_ok(client, tokens, side="sell", type="trailing_stop", trail_amount="100",
                               quantity="0.02")
        await wait_working(runtime, trail["id"])
        await market.trade("60500", "0.01")  # the trailing stop's high-water mark moves to 60500
        await wait_order(client, tokens, trail["id"], lambda o: o["stop_price"] == "60400", "the trail to move")
        await wait_working(runtime, stop["id"])
    # a new process on the same database: the owner re-arms all three from the database
    second = create_app(make_settings(database_url, data_dir=tmp_path / "var"))
    async with second.router.lifespan_context(second), client_from(second, "203.0.113.22") as client:
        runtime = second.state.runtime
        for order in (limit, stop, trail):
            await wait_working(runtime, order["id"])
        market = Market(runtime)
        await market.book([("58990", "1")], [("59010", "1")])
        await market.trade("60400", "0.01")  # at the trailing stop's level (its mark survived): sells 0.02
        await market.trade("59850", "0.05")  # through the limit
        await market.trade("58990", "0.01")  # through the stop: sells 0.1 @ 58990
        trailed = await wait_order(client, tokens, trail["id"], lambda o: o["status"] == "filled", "the trail")
        assert (trailed["average_fill_price"], trailed["fees"]) == ("58990", "1.1798")
        filled = await wait_order(client, tokens, limit["id"], lambda o: o["status"] == "filled", "the limit")
        assert (filled["average_fill_price"], filled["fees"]) == ("59900", "2.995")
        sold = await wait_order(client, tokens, stop["id"], lambda o: o["status"] == "filled", "the stop")
        assert (sold["average_fill_price"], sold["fees"]) == ("58990", "5.899")
        # USDT: 10000 − 2997.995 + (5899 − 5.899) + (1179.8 − 1.1798); BTC 0.12 − 0.1 − 0.02 + 0.05
        assert await balances(client, tokens, account) == {"USDT": ("14073.7262", "0"), "BTC": ("0.05", "0")}
        await assert_ledger_consistent(runtime, account)


async def test_a_fenced_owner_cannot_fill_and_nothing_fills_twice(client: httpx.AsyncClient,
                                                                  runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05")
    await wait_working(runtime, order["id"])
    owner = runtime.services["matching"]
    stale = owner.lease.token
    async with runtime.db.transaction() as session:  # another process took the lease over meanwhile
        await session.execute(update(LeaseRow).where(LeaseRow.name == owner.lease.name)
                              .values(token=LeaseRow.token + 1))
    await market.trade("59900", "0.02")  # the stale owner's write is refused: nothing fills
    await wait_for(lambda: owner.ready.is_set() and owner.lease is not None and owner.lease.token > stale + 1,
                   "the owner to lose the lease and win it back", timeout=20)
    unchanged = await get_order(client, tokens, order["id"])
    assert (unchanged["status"], unchanged["filled_quantity"]) == ("new", "0")
    await market.trade("59900", "0.05")  # the new owner, re-armed from the database, fills it once
    done = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "filled", "the fill")
    fills = (await client.get("/api/trading/fills", params={"order_id": order["id"]},
                              headers=bearer(tokens))).json()["items"]
    assert [(f["quantity"], f["trade_id"]) for f in fills] == [("0.05", f"{order['id']}-1")]
    assert done["fees"] == "2.995"
    await assert_ledger_consistent(runtime, account)


async def test_day_orders_expire_at_utc_midnight(client: httpx.AsyncClient, runtime: Runtime) -> None:
    market = Market(runtime)
    await market.book(BIDS, ASKS)
    _, tokens = await new_user(client)
    account = await default_account(client, tokens)
    order = await place_ok(client, tokens, side="buy", type="limit", price="59900", quantity="0.05",
                           time_in_force="day")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert order["expires_at"].replace("Z", "+00:00") == tomorrow.isoformat()
    await wait_working(runtime, order["id"])
    owner = runtime.services["matching"]
    await owner._queue.put(("tick", tomorrow))  # time passes: what the owner's one-second beat does
    expired = await wait_order(client, tokens, order["id"], lambda o: o["status"] == "expired", "the expiry")
    assert expired["reserved"] == "0"
    assert await balances(client, tokens, account) == {"USDT": ("10000", "0")}
    await assert_ledger_consistent(runtime, account)
