"""SIGKILL between sending a live order and recording the exchange's answer: a real server process
(file SQLite, then PostgreSQL) places a market order on the local fake Binance, which takes and
fills it and — before answering — kills the server. Restarted on the same database, the
server's start-up reconciliation finds the order by its ``tp-`` client id and adopts it with its
fills: one order on the exchange, one on the platform, the ledger equal to the exchange."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.servers import Server, server_env, tradepilot
from tests.fakes.binance_spot import FakeBinanceSpot, FakeOrder
from tests.integration.orders_support import assert_ledger_consistent
from tradepilot.core.db import Database
from tradepilot.trading.order_models import Fill, Order

pytestmark = pytest.mark.slow

API_KEY = "e2eLiveKey0123456789abcdef0123456789abcdef0123456789abcdef01234"
SECRET = "e2eLiveSecret0123456789abcdef0123456789abcdef0123456789abcdef01"


async def _start(env: dict[str, str], cwd: Path) -> Server:
    server = Server(env, cwd)
    await asyncio.to_thread(server.wait_ready, 120)  # the fake keeps answering meanwhile
    return server


async def _login(http: httpx.AsyncClient) -> dict[str, str]:
    email, password = f"live-crash-{uuid.uuid4().hex[:8]}@example.com", "a crash loses no order"
    assert (await http.post("/api/auth/register", json={"email": email, "password": password})).status_code == 201
    login = await http.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _crash_and_restart(env: dict[str, str], cwd: Path, database_url: str) -> None:
    fake = await FakeBinanceSpot().start()
    env = {**env, "TRADEPILOT_LIVE_EXCHANGE_REST_URL": fake.rest_url, "TRADEPILOT_LEASE_TTL_SECONDS": "5",
           "TRADEPILOT_LIVE_RECONCILE_INTERVAL_SECONDS": "2", "TRADEPILOT_RATE_LIMIT_ENABLED": "false",
           "TRADEPILOT_LIVE_USER_STREAM_ENABLED": "false"}  # the fake serves REST only
    await asyncio.to_thread(tradepilot, ["migrate"], env, cwd)
    fake.add_account(API_KEY, SECRET, {"USDT": "10000", "BNB": "1"})
    server = await _start(env, cwd)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            auth = await _login(http)
            resp = await http.post("/api/trading/accounts", headers=auth, json={
                "type": "live", "exchange": "binance", "api_key": API_KEY, "secret": SECRET})
            assert resp.status_code == 201, resp.text
            account_id = resp.json()["id"]

            def kill(order: FakeOrder) -> None:  # the exchange took and filled it; its answer never arrives
                os.kill(server.proc.pid, signal.SIGKILL)

            fake.on_order_taken = kill
            with pytest.raises(httpx.HTTPError):
                await http.post("/api/trading/orders", headers=auth, json={
                    "account_id": account_id, "symbol": "BTC/USDT", "side": "buy", "type": "market",
                    "quantity": "0.05"})
        await asyncio.to_thread(server.proc.wait, 30)
        assert server.proc.returncode == -signal.SIGKILL
    finally:
        fake.on_order_taken = None
        server.stop()
    [taken] = fake.orders
    assert taken.status == "FILLED" and taken.client_order_id.startswith("tp-")
    db = Database(database_url)
    try:
        async with db.session() as session:  # recorded before it was sent, nothing after
            [row] = list(await session.scalars(select(Order).where(Order.account_id == uuid.UUID(account_id))))
        assert (row.status, row.exchange_order_id, row.reserved > 0) == ("pending_new", None, True)
        assert taken.client_order_id == f"tp-{row.id.hex}"
    finally:
        await db.dispose()

    restarted = await _start(env, cwd)
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:  # the start-up reconciliation (after the dead process's lease expired) adopts it
                got = (await http.get(f"/api/trading/orders/{row.id}", headers=auth)).json()
                if got["status"] != "pending_new":
                    break
                assert time.monotonic() < deadline, f"never reconciled: {restarted.log.read_text()[-3000:]}"
                await asyncio.sleep(0.2)
            assert (got["status"], got["filled_quantity"], got["fees"], got["reserved"], got["source"]) == (
                "filled", "0.05", "3.0001", "0", "platform")
            while True:  # the run is recorded once its writes are done
                runs = (await http.get(f"/api/trading/accounts/{account_id}/reconciliation", headers=auth)).json()
                if runs["items"]:
                    break
                assert time.monotonic() < deadline, "the run was never recorded"
                await asyncio.sleep(0.2)
            kinds = [d["kind"] for r in runs["items"] for d in r["differences"]]
            assert kinds == ["pending_adopted"], runs
            orders = (await http.get("/api/trading/orders", headers=auth,
                                     params={"account_id": account_id})).json()["items"]
            assert [o["id"] for o in orders] == [str(row.id)]  # no duplicate on the platform
        assert len(fake.sent("POST", "order")) == 1 and len(fake.orders) == 1  # nor on the exchange
    finally:
        restarted.stop()
        await fake.stop()
    db = Database(database_url)
    try:
        async with db.session() as session:
            fills = list(await session.scalars(select(Fill).where(Fill.order_id == row.id)))
        assert sorted((f.price, f.quantity) for f in fills) == [(Decimal(60000), Decimal("0.04")),
                                                               (Decimal(60010), Decimal("0.01"))]
        balances = await assert_ledger_consistent(SimpleNamespace(db=db), account_id)
        exchange = {a: v for a, v in fake.accounts[API_KEY].balances.items() if v}
        assert {a: b.free + b.locked for a, b in balances.items() if b.free + b.locked} == exchange
    finally:
        await db.dispose()


@pytest.mark.timeout(300)
async def test_sigkill_after_sending_a_live_order_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}"
    await _crash_and_restart(server_env(database_url=url, data_dir=str(tmp_path / "var")), tmp_path, url)


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_sigkill_after_sending_a_live_order_on_postgres(tmp_path: Path, postgres_database: Any) -> None:
    await postgres_database.truncate()
    env = server_env(database_url=postgres_database.url, data_dir=str(tmp_path / "var"))
    await _crash_and_restart(env, tmp_path, postgres_database.url)
