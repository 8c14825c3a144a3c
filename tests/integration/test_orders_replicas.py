"""Two replicas on one database and one Redis bus: one matching owner; an order placed on the
other replica reaches it and fills once; when the owner stops, the other takes over and fills
what rests. SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib

import pytest

from tests.helpers import bearer, new_user
from tests.integration.admin_support import client_from
from tests.integration.orders_support import (
    Market,
    assert_ledger_consistent,
    balances,
    default_account,
    place_ok,
    wait_for,
    wait_order,
    wait_working,
)
from tests.support import make_settings
from tradepilot.app import create_app


@pytest.mark.redis
async def test_an_order_placed_on_one_replica_is_matched_once_by_the_owner_and_survives_its_stop(
        database_url: str, redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(database_url, data_dir=tmp_path / "var", redis_url=redis_url)
    apps = [create_app(settings), create_app(settings)]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        runtimes = [app.state.runtime for app in apps]
        owners = [rt.services["matching"] for rt in runtimes]
        await wait_for(lambda: sum(o.ready.is_set() for o in owners) == 1, "one matching owner", timeout=20)
        owner_index = next(i for i, o in enumerate(owners) if o.ready.is_set())
        other_index = 1 - owner_index
        markets = [Market(rt) for rt in runtimes]
        await markets[0].book([("59990", "1")], [("60000", "1")])
        await wait_for(lambda: markets[1].service.order_book("BTC/USDT") is not None, "the book on both replicas")

        placing = await stack.enter_async_context(client_from(apps[other_index], "203.0.113.31"))
        _, tokens = await new_user(placing)
        account = await default_account(placing, tokens)
        first = await place_ok(placing, tokens, side="buy", type="limit", price="59900", quantity="0.05")
        second = await place_ok(placing, tokens, side="buy", type="limit", price="59800", quantity="0.05")
        await wait_working(runtimes[owner_index], first["id"])
        await wait_working(runtimes[owner_index], second["id"])
        assert not owners[other_index].working(first["id"])  # the other replica matches nothing

        await markets[other_index].trade("59900", "1")  # heard by both replicas; only the owner fills
        done = await wait_order(placing, tokens, first["id"], lambda o: o["status"] == "filled", "the first fill")
        fills = (await placing.get("/api/trading/fills", params={"order_id": first["id"]},
                                   headers=bearer(tokens))).json()["items"]
        assert [f["quantity"] for f in fills] == ["0.05"] and done["fees"] == "2.995"

        # the owner goes away: the other replica takes the lease over and re-arms from the database
        await _stop(runtimes[owner_index])
        await wait_working(runtimes[other_index], second["id"])
        await markets[other_index].trade("59800", "1")
        await wait_order(placing, tokens, second["id"], lambda o: o["status"] == "filled", "the second fill")
        assert await balances(placing, tokens, account) == {"USDT": ("4009.015", "0"), "BTC": ("0.1", "0")}
        await assert_ledger_consistent(runtimes[other_index], account)


async def _stop(runtime) -> None:  # type: ignore[no-untyped-def]
    """Stop one replica's matching (as its shutdown does first), releasing the lease."""
    from tradepilot.trading.matching_owner import stop_matching

    await stop_matching(runtime)
