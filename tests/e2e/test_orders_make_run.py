"""`make run`'s steps (migrate, demo-user, serve with the simulated market), then the demo user
sends the plan's curl order and sees the order, its fills, the position and the balance change
through the API and, in commit order with consecutive seq, on the WebSocket `account` channel."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.servers import make_run

pytestmark = pytest.mark.slow

PLAN_ORDER = b'{"symbol":"BTC/USDT","side":"buy","quantity":0.1,"type":"market"}'  # the plan's curl body, exactly


def _wait_book(http: httpx.Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        resp = http.get("/api/market/orderbook/BTC/USDT")
        if resp.status_code == 200 and resp.json().get("asks"):
            return
        assert time.monotonic() < deadline, f"no BTC/USDT book from the simulated market: {resp.text}"
        time.sleep(1.0)  # within the demo user's 120 requests a minute, however long the book takes


async def _session(url: str, token: str, auth: dict[str, str]) -> tuple[dict, list[dict], dict]:
    seen: list[dict] = []
    async with connect(url.replace("http://", "ws://") + "/api/ws", open_timeout=5) as ws:

        async def until(done: Any, what: str, timeout: float = 30.0) -> None:
            try:
                async with asyncio.timeout(timeout):
                    while not done():
                        message = json.loads(await ws.recv())
                        assert message["type"] != "error", message
                        seen.append(message)
            except TimeoutError:
                raise AssertionError(f"no {what}; got {[(m['type'], m.get('data', {}).get('type')) for m in seen]}") from None

        def account_events() -> list[dict]:
            return [m for m in seen if m["type"] == "event" and m.get("channel") == "account"]

        await ws.send(json.dumps({"type": "auth", "token": token}))
        await until(lambda: any(m["type"] == "authenticated" for m in seen), "authentication")
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account"]}))
        await until(lambda: any(m["type"] == "subscribed" for m in seen), "subscription")
        subscribed = next(m for m in seen if m["type"] == "subscribed")
        async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
            resp = await http.post("/api/trading/orders", content=PLAN_ORDER,
                                   headers={"Content-Type": "application/json"})
        assert resp.status_code == 201, resp.text
        order = resp.json()
        await until(lambda: any(e["data"]["type"] == "order.updated" for e in account_events()),
                    "order.updated on the account channel")
    return order, account_events(), subscribed


@pytest.mark.timeout(180)
def test_make_run_server_fills_the_plans_market_order_and_streams_its_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, demo = make_run(tmp_path)
    try:
        server.wait_ready(timeout=90)
        login = httpx.post(server.url + "/api/auth/login", json={"email": demo.email, "password": demo.password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
            _wait_book(http)
            [account] = [a for a in http.get("/api/trading/accounts").json()["items"] if a["is_default"]]
            before = {b["asset"]: b for b in http.get(f"/api/trading/accounts/{account['id']}").json()["balances"]}

            order, events, subscribed = asyncio.run(_session(server.url, token, auth))

            # the answer: filled at once, the JSON number 0.1 taken exactly
            assert order["status"] == "filled" and order["quantity"] == "0.1" and order["filled_quantity"] == "0.1"
            assert order["account_id"] == account["id"] and order["symbol"] == "BTC/USDT" and order["type"] == "market"
            # through the API: the order, its fills, the position and the balances
            assert http.get(f"/api/trading/orders/{order['id']}").json()["status"] == "filled"
            fills = http.get("/api/trading/fills", params={"order_id": order["id"]}).json()["items"]
            assert fills and sum(Decimal(f["quantity"]) for f in fills) == Decimal("0.1")
            cost = sum(Decimal(f["price"]) * Decimal(f["quantity"]) for f in fills)
            fees = sum(Decimal(f["fee"]) for f in fills)
            assert fees == Decimal(order["fees"]) and cost == Decimal(order["average_fill_price"]) * Decimal("0.1")
            [position] = [p for p in http.get("/api/trading/positions").json()["items"] if p["symbol"] == "BTC/USDT"]
            assert Decimal(position["quantity"]) == Decimal("0.1")
            assert Decimal(position["average_entry_price"]) == Decimal(order["average_fill_price"])
            after = {b["asset"]: b for b in http.get(f"/api/trading/accounts/{account['id']}").json()["balances"]}
            assert Decimal(after["USDT"]["free"]) == Decimal(before["USDT"]["free"]) - cost - fees
            assert Decimal(after["USDT"]["locked"]) == 0 and Decimal(after["BTC"]["free"]) == Decimal("0.1")

        # on the account channel: reservation, (balance, fill) per fill, position, order — consecutive seq
        kinds = [e["data"]["type"] for e in events]
        assert kinds == (["balance.updated"] + ["balance.updated", "fill.created"] * len(fills)
                         + ["position.updated", "order.updated"]), kinds
        assert [e["seq"] for e in events] == list(range(subscribed["seq"] + 1, subscribed["seq"] + 1 + len(events)))
        assert {e["data"]["payload"]["fill"]["id"] for e in events if e["data"]["type"] == "fill.created"} \
            == {f["id"] for f in fills}
        assert events[-2]["data"]["payload"]["position"]["quantity"] == position["quantity"]
        last = events[-1]["data"]["payload"]["order"]
        assert last["id"] == order["id"] and last["status"] == "filled"
    finally:
        server.stop()
