"""Two server processes sharing PostgreSQL and Redis; one holds the matching lease
(``paper-matching:simulated``). Neither runs the market feed: the test publishes books and
trades on the Redis bus itself, as a feed owner on a third replica would.

Through the process that does *not* own matching, a user places a resting limit, a stop and a
position stop-loss; trades reaching them make each fill exactly once (fills counted per order
in the database). Then, with a new such set resting, the lease owner is SIGKILLed: the other
process takes the lease over, re-arms from the database, and each fills exactly once again.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.servers import Server, server_env, tradepilot
from tests.integration.orders_support import assert_ledger_consistent
from tests.support import make_settings, worker_id
from tradepilot.core.lease_models import LeaseRow
from tradepilot.market import payloads
from tradepilot.market.types import OrderBook, Trade
from tradepilot.runtime import Runtime, build_runtime
from tradepilot.trading.matching_owner import lease_name
from tradepilot.trading.order_models import Fill, Order

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

VENUE, SYMBOL = "simulated", "BTC/USDT"
_ids = itertools.count(1)


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Feed:
    """Publishes the market on the servers' Redis bus and waits until both servers have it."""

    def __init__(self, runtime: Runtime, servers: list[Server], auth: dict[str, str]) -> None:
        self.runtime, self.servers, self.auth, self.seq = runtime, servers, auth, 0

    def alive(self) -> list[Server]:
        return [s for s in self.servers if s.proc.poll() is None]

    async def book(self, http: httpx.AsyncClient) -> None:
        self.seq += 1
        book = OrderBook(venue=VENUE, symbol=SYMBOL, seq=self.seq, bids=((Decimal("59990"), Decimal("5")),),
                         asks=((Decimal("60000"), Decimal("5")),), ts=datetime.now(UTC))
        await self.runtime.bus.publish(payloads.book_event(book))
        for server in self.alive():
            async def has_book(url: str = server.url) -> bool:
                resp = await http.get(f"{url}/api/market/orderbook/{SYMBOL}", headers=self.auth)
                return resp.status_code == 200 and resp.json()["seq"] >= self.seq
            await _until(has_book, f"the book on {server.url}")

    async def trade(self, http: httpx.AsyncClient, price: str) -> None:
        trade_id = f"e2e-{next(_ids)}-{uuid.uuid4().hex[:6]}"
        await self.runtime.bus.publish(payloads.trade_event(Trade(
            venue=VENUE, symbol=SYMBOL, id=trade_id, price=Decimal(price), quantity=Decimal("1"), side="sell",
            ts=datetime.now(UTC))))
        for server in self.alive():
            async def has_trade(url: str = server.url) -> bool:
                resp = await http.get(f"{url}/api/market/trades/{SYMBOL}", headers=self.auth)
                return resp.status_code == 200 and any(t["id"] == trade_id for t in resp.json()["items"])
            await _until(has_trade, f"the trade on {server.url}")


async def _owner_pid(runtime: Runtime) -> int:
    async with runtime.db.session() as session:
        lease = await session.scalar(select(LeaseRow).where(LeaseRow.name == lease_name(VENUE)))
    return int(lease.holder.split(":")[1]) if lease is not None else 0


async def _fill_by_trades(feed: Feed, http: httpx.AsyncClient, order_id: str, price: str, what: str) -> None:
    """Trade at ``price`` until the order is filled: the owner may not have loaded it yet (it learns
    of orders through the bus, or its resync); a trade it has not seen yet fills nothing."""
    deadline = time.monotonic() + 25
    while True:
        await feed.trade(http, price)
        soon = time.monotonic() + 1.0
        while time.monotonic() < soon:
            resp = await http.get(f"/api/trading/orders/{order_id}")
            assert resp.status_code == 200, resp.text
            if resp.json()["status"] == "filled":
                return
            await asyncio.sleep(0.05)
        assert time.monotonic() < deadline, f"{what} never filled: {resp.json()}"


async def _place(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await http.post("/api/trading/orders", json={"symbol": SYMBOL, **body})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def _round(feed: Feed, http: httpx.AsyncClient, limit: str, stop: str, sl: str,
                 kill: Callable[[], None] | None = None) -> list[str]:
    """A position, then a resting limit buy, a stop buy and the position's stop-loss; each
    triggered by a trade through it. Returns the ids of the three orders that must fill."""
    entry = await _place(http, side="buy", type="market", quantity="0.03")
    assert entry["status"] == "filled"
    resting = await _place(http, side="buy", type="limit", quantity="0.01", price=limit)
    stop_order = await _place(http, side="buy", type="stop", quantity="0.01", stop_price=stop)
    assert resting["status"] == stop_order["status"] == "new"
    [position] = [p for p in (await http.get("/api/trading/positions")).json()["items"] if p["symbol"] == SYMBOL]
    resp = await http.put(f"/api/trading/positions/{position['id']}/stop-loss", json={"stop_price": sl})
    assert resp.status_code == 200, resp.text
    if kill is not None:
        kill()  # while the three rest
    await _fill_by_trades(feed, http, resting["id"], limit, "the resting limit")
    await _fill_by_trades(feed, http, stop_order["id"], stop, "the stop")
    # the stop-loss in force now (resized, as a new order, by the two buys)
    [position] = [p for p in (await http.get("/api/trading/positions")).json()["items"] if p["symbol"] == SYMBOL]
    stop_loss = position["stop_loss"]
    assert stop_loss is not None and Decimal(stop_loss["quantity"]) == Decimal("0.05"), position
    await _fill_by_trades(feed, http, stop_loss["order_id"], sl, "the stop-loss")
    [position] = [p for p in (await http.get("/api/trading/positions")).json()["items"] if p["symbol"] == SYMBOL] or [
        {"quantity": "0"}]
    assert Decimal(position["quantity"]) == 0, position
    return [resting["id"], stop_order["id"], stop_loss["order_id"]]


async def _scenario(servers: list[Server], env_settings: Any, email: str, password: str) -> None:
    runtime = build_runtime(env_settings)
    await runtime.bus.start()
    try:
        async with httpx.AsyncClient(timeout=10) as anon:
            pids = {s.proc.pid for s in servers}

            async def one_of_them_owns() -> bool:  # (not a holder left in the table by an earlier run)
                return await _owner_pid(runtime) in pids

            await _until(one_of_them_owns, "a matching owner")
            owner_pid = await _owner_pid(runtime)
            [owner] = [s for s in servers if s.proc.pid == owner_pid]
            [other] = [s for s in servers if s is not owner]
            assert (await anon.post(other.url + "/api/auth/register",
                                    json={"email": email, "password": password})).status_code == 201
            login = await anon.post(other.url + "/api/auth/login", json={"email": email, "password": password})
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        feed = Feed(runtime, servers, auth)
        async with httpx.AsyncClient(base_url=other.url, headers=auth, timeout=10) as http:
            await feed.book(http)
            await feed.trade(http, "60000")  # a last price for the collar and the stops' checks
            account_id = next(a["id"] for a in (await http.get("/api/trading/accounts")).json()["items"]
                              if a["is_default"])

            first = await _round(feed, http, limit="59900", stop="60500", sl="59500")

            def kill_owner() -> None:
                owner.proc.send_signal(signal.SIGKILL)
                owner.proc.wait(timeout=10)

            second = await _round(feed, http, limit="59800", stop="60600", sl="59400", kill=kill_owner)
            assert await _owner_pid(runtime) == other.proc.pid  # the survivor took the lease over

        async with runtime.db.session() as session:
            fills = Counter((await session.scalars(select(Fill.order_id).where(
                Fill.account_id == uuid.UUID(account_id)))).all())
            orders = {str(o.id): o for o in await session.scalars(select(Order).where(
                Order.account_id == uuid.UUID(account_id)))}
        for order_id in first + second:  # each exactly once
            assert fills[uuid.UUID(order_id)] == 1, (order_id, fills[uuid.UUID(order_id)])
            assert orders[order_id].status == "filled" and orders[order_id].filled_quantity == orders[order_id].quantity
        assert all(n == 1 for n in fills.values()), fills  # no order anywhere filled twice
        await assert_ledger_consistent(runtime, account_id)  # type: ignore[arg-type]
    finally:
        await runtime.bus.stop()
        if runtime.redis is not None:
            await runtime.redis.aclose()
        await runtime.db.dispose()


@pytest.mark.timeout(240)
def test_resting_limit_stop_and_stop_loss_fill_once_across_two_servers_and_a_killed_lease_owner(
        tmp_path, postgres_database, redis_url) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(postgres_database.truncate())
    prefix = f"tpe2e:{worker_id()}:{time.time_ns()}:"
    env = server_env(database_url=postgres_database.url, redis_url=redis_url, redis_prefix=prefix,
                     market_feed_owner="false", lease_ttl_seconds="2", paper_matching_resync_seconds="0.5",
                     rate_limit_enabled="false", data_dir=str(tmp_path / "var"))
    tradepilot(["migrate"], env, tmp_path)
    servers = [Server(env, tmp_path), Server(env, tmp_path)]
    try:
        for server in servers:
            server.wait_ready(timeout=90)
        settings = make_settings(postgres_database.url, redis_url=redis_url, redis_prefix=prefix)
        asyncio.run(_scenario(servers, settings, f"two-{uuid.uuid4().hex[:8]}@example.com", "two servers match once"))
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.stop()

