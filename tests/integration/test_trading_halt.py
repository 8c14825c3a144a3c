"""The platform trading halt: admins only, visible at once on every request, audited."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.admin_support import make_admin
from tradepilot.core.errors import ServiceUnavailable
from tradepilot.trading.halt import current_halt, ensure_not_halted


async def test_an_admin_halts_and_resumes_trading(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    admin, tokens = await make_admin(client, runtime)
    auth = bearer(tokens)
    assert (await client.get("/api/admin/trading/halt", headers=auth)).json()["halted"] is False
    halted = await client.put("/api/admin/trading/halt", json={"reason": "exchange incident"}, headers=auth)
    assert halted.status_code == 200
    assert halted.json()["halted"] is True and halted.json()["reason"] == "exchange incident"
    assert halted.json()["changed_by"] == admin["id"]
    async with runtime.db.session() as session:
        with pytest.raises(ServiceUnavailable) as refused:
            await ensure_not_halted(session)
    assert refused.value.code == "trading_halted" and refused.value.extra == {"reason": "exchange incident"}
    resumed = await client.delete("/api/admin/trading/halt", headers=auth)
    assert resumed.json()["halted"] is False and resumed.json()["reason"] is None
    async with runtime.db.session() as session:
        await ensure_not_halted(session)
        assert not (await current_halt(session)).halted
    events = (await client.get("/api/auth/security-events", headers=auth)).json()["items"]
    actions = [e["details"].get("action") for e in events if e["kind"] == "admin.action"]
    assert actions[:2] == ["trading_resumed", "trading_halted"]


async def test_users_cannot_touch_the_halt(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    for method in ("GET", "PUT", "DELETE"):
        answer = await client.request(method, "/api/admin/trading/halt", json={"reason": "x"}, headers=bearer(tokens))
        assert answer.status_code == 403 and answer.json()["code"] == "admin_required"


async def test_a_halt_needs_a_reason(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await make_admin(client, runtime)
    for body in ({}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "ok", "halted_by": "someone"}):
        answer = await client.put("/api/admin/trading/halt", json=body, headers=bearer(tokens))
        assert answer.status_code == 422, body


async def test_a_halt_refuses_new_orders_but_not_cancels(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.orders_support import Market, place, place_ok

    market = Market(runtime)
    await market.book(bids=[("100", "5")], asks=[("101", "5")])
    _, admin = await make_admin(client, runtime)
    _, trader = await new_user(client)
    resting = await place_ok(client, trader, side="buy", type="limit", quantity="1", price="99")
    await client.put("/api/admin/trading/halt", json={"reason": "maintenance"}, headers=bearer(admin))
    refused = await place(client, trader, side="buy", type="market", quantity="1")
    assert refused.status_code == 503 and refused.json()["code"] == "trading_halted"
    assert refused.json()["reason"] == "maintenance"
    canceled = await client.delete(f"/api/trading/orders/{resting['id']}", headers=bearer(trader))
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    await client.delete("/api/admin/trading/halt", headers=bearer(admin))
    assert (await place(client, trader, side="buy", type="market", quantity="1")).status_code == 201
