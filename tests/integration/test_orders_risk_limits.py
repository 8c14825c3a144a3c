"""A user's own risk limits: max order value, max position value, and the daily loss kill switch."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.orders_support import Market, place, place_ok
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def set_risk(client: httpx.AsyncClient, tokens: dict, **risk: str) -> httpx.Response:
    return await client.put("/api/users/me/settings", json={"risk": risk}, headers=bearer(tokens))


async def test_order_and_position_value_limits(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    market = Market(runtime)
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    await market.trade("100.5", "1")
    _, tokens = await new_user(client)
    saved = await set_risk(client, tokens, max_order_notional="500", max_position_notional="800")
    assert saved.status_code == 200 and saved.json()["risk"] == {
        "max_order_notional": "500", "max_position_notional": "800", "daily_loss_limit": None}
    big = await place(client, tokens, side="buy", type="market", quantity="5")  # 505 + fee
    assert big.status_code == 422 and big.json()["code"] == "order_notional_above_limit"
    await place_ok(client, tokens, side="buy", type="market", quantity="4")  # 404 + fee, position 4 x 100.5
    more = await place(client, tokens, side="buy", type="market", quantity="4")  # position 8 x 100.5 = 804
    assert more.status_code == 422 and more.json()["code"] == "position_above_limit"
    assert more.json()["limit"] == "800"
    await place_ok(client, tokens, side="buy", type="market", quantity="3")  # 7 x 100.5 = 703.5
    # limits are the user's own: removing them lifts them
    assert (await set_risk(client, tokens)).json()["risk"]["max_order_notional"] is None
    await place_ok(client, tokens, side="buy", type="market", quantity="5")


async def test_the_daily_loss_limit_stops_new_orders_until_the_next_utc_day(
        client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    market = Market(runtime)
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    created = await client.post("/api/auth/register", json={"email": "loss@example.com",
                                                             "password": "a sturdy test passphrase"})
    assert created.status_code == 201
    key_owner = (await client.post("/api/auth/login", json={"email": "loss@example.com",
                                                            "password": "a sturdy test passphrase"})).json()
    key = (await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read", "trade"]},
                             headers=bearer(key_owner))).json()["key"]
    auth = {"X-API-Key": key}  # an access token would expire when the clock moves a day
    assert (await client.put("/api/users/me/settings", json={"risk": {"daily_loss_limit": "100"}},
                             headers=auth)).status_code == 200

    async def order(**body: str) -> httpx.Response:
        return await client.post("/api/trading/orders", json={"symbol": "BTC/USDT", **body}, headers=auth)

    assert (await order(side="buy", type="market", quantity="10")).status_code == 201  # 1,010 + 1.01 fee
    await market.book(bids=[("92", "50")], asks=[("93", "50")])
    assert (await order(side="sell", type="market", quantity="10")).status_code == 201  # -90 gross, fees 1.93
    # lost 92.94 today: below the limit, still trading
    assert (await order(side="buy", type="market", quantity="1")).status_code == 201
    await market.book(bids=[("80", "50")], asks=[("81", "50")])
    assert (await order(side="sell", type="market", quantity="1")).status_code == 201  # now beyond 100
    refused = await order(side="buy", type="market", quantity="1")
    assert refused.status_code == 422 and refused.json()["code"] == "daily_loss_limit_reached"
    assert refused.json()["daily_loss_limit"] == "100"
    clock.advance(24 * 3600)  # the next UTC day
    assert (await order(side="buy", type="market", quantity="1")).status_code == 201


async def test_risk_settings_are_validated(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    for risk in ({"max_order_notional": "0"}, {"daily_loss_limit": "-5"}, {"max_order_notional": "abc"},
                 {"max_order_notional": "1e-19"}, {"max_leverage": "3"}):
        answer = await client.put("/api/users/me/settings", json={"risk": risk}, headers=bearer(tokens))
        assert answer.status_code == 422, risk
