"""GET /api/trading/portfolio: balances valued at the market's last trades, exactly."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from tests.helpers import bearer, new_user
from tradepilot.market import payloads
from tradepilot.market.types import Trade


async def trade(runtime, symbol: str, price: str) -> None:  # type: ignore[no-untyped-def]
    market = runtime.services["market"]
    await runtime.bus.publish(payloads.trade_event(Trade(
        venue=market.venue, symbol=symbol, id=f"t-{symbol}-{price}", price=Decimal(price), quantity=Decimal("1"),
        side="buy", ts=datetime.now(UTC))))
    deadline = time.monotonic() + 5
    while market.last_price(symbol) != Decimal(price):
        assert time.monotonic() < deadline, "the market service never saw the trade"
        await asyncio.sleep(0.01)


async def test_portfolio_values_every_account_at_the_last_price(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    account = (await client.get("/api/trading/accounts", headers=auth)).json()["items"][0]
    for asset, amount in (("BTC", "0.1"), ("ETH", "2"), ("ZZZ", "7")):
        answer = await client.post(f"/api/trading/accounts/{account['id']}/deposits",
                                   json={"asset": asset, "amount": amount}, headers=auth)
        assert answer.status_code == 201, answer.text
    second = (await client.post("/api/trading/accounts", json={"name": "swing", "starting_balance": "500"},
                                headers=auth)).json()
    await trade(runtime, "BTC/USDT", "65000.5")
    await trade(runtime, "ETH/USDT", "3000")

    mine = (await client.get("/api/trading/portfolio", params={"account_id": account["id"]}, headers=auth)).json()
    assert mine["currency"] == "USDT" and mine["accounts"] == [account["id"]]
    assert mine["total_value"] == "22500.05" and mine["cash"] == "10000"
    assert [(h["asset"], h["value"]) for h in mine["holdings"]] == [
        ("USDT", "10000"), ("BTC", "6500.05"), ("ETH", "6000"), ("ZZZ", None)]
    assert mine["unpriced"] == ["ZZZ"] and mine["holdings"][0]["weight"] == "0.44444346"

    everything = (await client.get("/api/trading/portfolio", headers=auth)).json()
    assert set(everything["accounts"]) == {account["id"], second["id"]}
    assert everything["total_value"] == "23000.05" and everything["cash"] == "10500"


async def test_another_users_account_is_not_found(client: httpx.AsyncClient) -> None:
    _, mine = await new_user(client)
    _, theirs = await new_user(client)
    their_account = (await client.get("/api/trading/accounts", headers=bearer(theirs))).json()["items"][0]
    answer = await client.get("/api/trading/portfolio", params={"account_id": their_account["id"]},
                              headers=bearer(mine))
    assert answer.status_code == 404 and answer.json()["code"] == "account_not_found"
    bad = await client.get("/api/trading/portfolio", params={"currency": "usd t"}, headers=bearer(mine))
    assert bad.status_code == 422
