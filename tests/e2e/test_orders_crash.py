"""SIGKILL during a burst of orders: a real server process (file SQLite, then PostgreSQL) takes
market and resting limit orders from many concurrent clients and is killed mid-burst; restarted
on the same database, every order that got a 2xx is there in its state, balances equal the
ledger, locked equals the open orders' reservations, and no order is half-written."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.servers import Server, server_env, tradepilot
from tests.integration.orders_support import assert_ledger_consistent
from tradepilot.core.db import Database
from tradepilot.trading.order_models import Fill, Order, OrderEvent, OrderStatus

pytestmark = pytest.mark.slow

USERS = 4
CLIENTS_PER_USER = 3  # 12 concurrent clients
KILL_AFTER = 40  # acknowledged orders before the SIGKILL (the burst goes on while it lands)


def _register(url: str, n: int) -> dict[str, str]:
    email, password = f"crash-{n}-{uuid.uuid4().hex[:8]}@example.com", "orders survive a crash"
    assert httpx.post(url + "/api/auth/register", json={"email": email, "password": password}).status_code == 201
    login = httpx.post(url + "/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _last_price(url: str, auth: dict[str, str], timeout: float = 60) -> Decimal:
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(url + "/api/market/orderbook/BTC/USDT", headers=auth)
        assert resp.status_code in (200, 404, 503), resp.text
        if resp.status_code == 200 and resp.json().get("bids") and resp.json().get("asks"):
            return Decimal(str(resp.json()["bids"][0][0]))
        assert time.monotonic() < deadline, f"no book: {resp.text}"
        time.sleep(0.1)


async def _burst(server: Server, users: list[dict[str, str]], last: Decimal) -> list[dict[str, Any]]:
    """Clients place orders in a loop until the server dies; the acknowledged orders are returned."""
    acked: list[dict[str, Any]] = []
    interrupted: list[int] = []  # requests the kill cut off (sent, never answered)
    killed = asyncio.Event()
    low = str(int(last * Decimal("0.6")))  # resting buy, well below the market (the collar is on the other side)
    high = str(int(last * Decimal("1.6")))  # resting sell, well above

    async def client(auth: dict[str, str], k: int) -> None:
        bodies = [{"type": "market", "side": "buy", "quantity": "0.001"},
                  {"type": "limit", "side": "buy", "quantity": "0.001", "price": low},
                  {"type": "limit", "side": "sell", "quantity": "0.0005", "price": high}]
        async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=10) as http:
            for i in range(1000):
                body = {"symbol": "BTC/USDT", "client_order_id": f"c{k}-{i}", **bodies[(i + k) % 3]}
                try:
                    resp = await http.post("/api/trading/orders", json=body)
                except httpx.HTTPError:
                    assert killed.is_set()
                    interrupted.append(k)
                    return  # the server is gone
                if resp.is_success:
                    acked.append({"auth": auth, **resp.json()})
                    if len(acked) >= KILL_AFTER and not killed.is_set():
                        killed.set()
                        server.proc.send_signal(signal.SIGKILL)
                else:
                    # refusals (e.g. nothing to sell yet) are fine; the server must never fail
                    assert resp.status_code < 500 or killed.is_set(), resp.text
                if killed.is_set() and server.proc.poll() is not None:
                    return

    await asyncio.wait_for(asyncio.gather(*(client(users[k % len(users)], k)
                                            for k in range(len(users) * CLIENTS_PER_USER))), 60)
    assert killed.is_set(), "the burst ended before the kill"
    assert interrupted, "no request was in flight when the server died"
    server.proc.wait(timeout=10)
    assert server.proc.returncode == -signal.SIGKILL
    return acked


async def _check_database(database_url: str, account_ids: list[str]) -> None:
    db = Database(database_url)
    try:
        runtime = SimpleNamespace(db=db)
        for account_id in account_ids:
            await assert_ledger_consistent(runtime, account_id)  # type: ignore[arg-type]
        async with db.session() as session:
            accounts = [uuid.UUID(a) for a in account_ids]
            orders = list(await session.scalars(select(Order).where(Order.account_id.in_(accounts))))
            filled: dict[uuid.UUID, Decimal] = defaultdict(Decimal)  # summed here: SQLite's SUM is a float
            for order_id, quantity in await session.execute(select(Fill.order_id, Fill.quantity)
                                                            .where(Fill.account_id.in_(accounts))):
                filled[order_id] += quantity
            events = defaultdict(list)
            for order_id, status in await session.execute(select(OrderEvent.order_id, OrderEvent.status)
                                                          .join(Order, Order.id == OrderEvent.order_id)
                                                          .where(Order.account_id.in_(accounts))):
                events[order_id].append(status)
        for o in orders:  # whole or absent: never an order without its fills, events or reservation
            assert o.status in OrderStatus.ALL, o.status
            assert filled.get(o.id, Decimal(0)) == o.filled_quantity, (o.id, o.status)
            assert o.status in events[o.id], (o.id, o.status, events[o.id])
            if o.status in OrderStatus.FINAL:
                assert o.reserved == 0, (o.id, o.status, o.reserved)
            else:
                assert o.reserved > 0, (o.id, o.status)
            if o.status == OrderStatus.FILLED:
                assert o.filled_quantity == o.quantity
    finally:
        await db.dispose()


def _crash_and_restart(env: dict[str, str], tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    env = {**env, "TRADEPILOT_RATE_LIMIT_ENABLED": "false"}
    tradepilot(["migrate"], env, tmp_path)
    server = Server(env, tmp_path)
    try:
        server.wait_ready(timeout=90)
        users = [_register(server.url, n) for n in range(USERS)]
        last = _last_price(server.url, users[0])
        acked = asyncio.run(_burst(server, users, last))
    finally:
        server.stop()

    restarted = Server(env, tmp_path)
    try:
        restarted.wait_ready(timeout=90)
        account_ids = set()
        with httpx.Client(base_url=restarted.url, timeout=10) as http:
            for a in acked:  # every acknowledged order is there, as it was answered (or moved on, if resting)
                resp = http.get(f"/api/trading/orders/{a['id']}", headers=a["auth"])
                assert resp.status_code == 200, (a["id"], resp.text)
                got = resp.json()
                assert (got["client_order_id"], got["quantity"], got["side"], got["type"]) \
                    == (a["client_order_id"], a["quantity"], a["side"], a["type"])
                if a["type"] == "market":
                    assert a["status"] == got["status"] == "filled"
                else:
                    assert a["status"] == "new" and got["status"] in ("new", "partially_filled", "filled"), got
                account_ids.add(a["account_id"])
        assert len(acked) >= KILL_AFTER and {a["type"] for a in acked} >= {"market", "limit"}
        asyncio.run(_check_database(database_url, sorted(account_ids)))
    finally:
        restarted.stop()


@pytest.mark.timeout(240)
def test_sigkill_during_a_burst_of_orders_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}"
    _crash_and_restart(server_env(database_url=url, data_dir=str(tmp_path / "var")), tmp_path, url)


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_sigkill_during_a_burst_of_orders_on_postgres(tmp_path, postgres_database) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(postgres_database.truncate())
    env = server_env(database_url=postgres_database.url, data_dir=str(tmp_path / "var"))
    _crash_and_restart(env, tmp_path, postgres_database.url)
