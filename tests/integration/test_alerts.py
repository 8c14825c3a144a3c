"""Alerts: the API, plan limits, the engine firing price alerts once or by cool-down on the test
clock, a trigger becoming a notification, exactly-once firing under a race, P&L and risk."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import bearer, new_user
from tests.integration.notifications_support import ALERTS, listing, wait_for_notifications
from tests.integration.orders_support import Market, place_ok, wait_for
from tradepilot.alerts.firing import fire
from tradepilot.alerts.models import AlertTrigger
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"alerts_portfolio_seconds": 3600.0,
                                                             "notifications_consumer_enabled": True}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def price_alert(client: httpx.AsyncClient, tokens: dict, **body: object) -> httpx.Response:
    return await client.post(f"{ALERTS}/price", json={"symbol": "BTC/USDT", **body}, headers=bearer(tokens))


async def engine_of(runtime):  # type: ignore[no-untyped-def]
    engine = runtime.services["alert_engine"]
    await asyncio.wait_for(engine.ready.wait(), 5)
    return engine


async def wait_indexed(runtime, alert_id: str) -> None:  # type: ignore[no-untyped-def]
    engine = await engine_of(runtime)
    await wait_for(lambda: alert_id in engine.index or alert_id in engine.portfolio, "the engine to index the alert")


async def tick(runtime, market: Market, price: str) -> None:  # type: ignore[no-untyped-def]
    """A trade, evaluated by the engine before the test moves the clock on."""
    engine = await engine_of(runtime)
    seen = engine.ticks_evaluated
    await market.trade(price, "1")
    await wait_for(lambda: engine.ticks_evaluated > seen, "the engine to evaluate the trade")


async def triggers(client: httpx.AsyncClient, tokens: dict, alert_id: str) -> list[dict]:
    answer = await client.get(f"{ALERTS}/{alert_id}/triggers", headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


async def test_create_list_pause_cancel_delete(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    above = await price_alert(client, tokens, condition="above", price="70000", message="take profit?")
    assert above.status_code == 201, above.text
    body = above.json()
    assert (body["kind"], body["condition"], body["threshold"], body["status"], body["recurring"]) == \
        ("price", "above", "70000", "active", False)
    pct = await price_alert(client, tokens, condition="percent_change", percent="5", window="1h", direction="down",
                            recurring=True, cooldown_seconds=600)
    assert pct.status_code == 201 and pct.json()["window_seconds"] == 3600 and pct.json()["cooldown_seconds"] == 600
    pnl = await client.post(f"{ALERTS}/pnl", json={"scope": "daily", "direction": "below", "threshold": "-3",
                                                    "unit": "percent"}, headers=bearer(tokens))
    assert pnl.status_code == 201 and pnl.json()["condition"] == "daily"
    risk = await client.post(f"{ALERTS}/risk", json={"measure": "drawdown", "threshold": "10"}, headers=bearer(tokens))
    assert risk.status_code == 201 and risk.json()["kind"] == "risk"
    listed = (await client.get(ALERTS, headers=bearer(tokens))).json()["items"]
    assert {a["id"] for a in listed} == {risk.json()["id"], pnl.json()["id"], pct.json()["id"], body["id"]}
    assert len(listed) == 4
    assert len((await client.get(ALERTS, params={"kind": "price"}, headers=bearer(tokens))).json()["items"]) == 2

    paused = await client.put(f"{ALERTS}/{body['id']}/status", json={"status": "paused"}, headers=bearer(tokens))
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    resumed = await client.put(f"{ALERTS}/{body['id']}/status", json={"status": "active"}, headers=bearer(tokens))
    assert resumed.json()["status"] == "active"
    cancelled = await client.put(f"{ALERTS}/{body['id']}/status", json={"status": "cancelled"}, headers=bearer(tokens))
    assert cancelled.json()["status"] == "cancelled"
    final = await client.put(f"{ALERTS}/{body['id']}/status", json={"status": "active"}, headers=bearer(tokens))
    assert final.status_code == 409 and final.json()["code"] == "alert_final"
    assert (await client.delete(f"{ALERTS}/{body['id']}", headers=bearer(tokens))).status_code == 204
    assert (await client.get(f"{ALERTS}/{body['id']}", headers=bearer(tokens))).status_code == 404


async def test_validation_and_ownership(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    _, other = await new_user(client)
    for body in ({"condition": "above"}, {"condition": "above", "price": "-1"}, {"condition": "sideways", "price": "1"},
                 {"condition": "percent_change", "percent": "5"}, {"condition": "percent_change", "percent": "5",
                                                                    "window": "2h"},
                 {"condition": "above", "price": "1", "window": "1h"},
                 {"condition": "above", "price": "1", "direction": "up"},
                 {"condition": "above", "price": "1", "recurring": True, "cooldown_seconds": 0}):
        answer = await price_alert(client, tokens, **body)
        assert answer.status_code == 422, body
        assert answer.json()["code"] in ("validation_error", "decimal_precision_loss")
    unknown = await client.post(f"{ALERTS}/price", json={"symbol": "NOPE/USDT", "condition": "above", "price": "1"},
                                headers=bearer(tokens))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_symbol"
    no_symbol = await client.post(f"{ALERTS}/pnl", json={"scope": "position", "direction": "above", "threshold": "1"},
                                  headers=bearer(tokens))
    assert no_symbol.status_code == 422
    foreign = await client.post(f"{ALERTS}/risk", json={"measure": "exposure", "threshold": "50",
                                                         "account_id": str(uuid.uuid4())}, headers=bearer(tokens))
    assert foreign.status_code == 404 and foreign.json()["code"] == "account_not_found"
    no_limit = await client.post(f"{ALERTS}/risk", json={"measure": "daily_loss_limit", "threshold": "80"},
                                 headers=bearer(tokens))
    assert no_limit.status_code == 422 and no_limit.json()["code"] == "daily_loss_limit_not_set"
    mine = (await price_alert(client, tokens, condition="below", price="10")).json()["id"]
    for method, path, body in (("GET", f"{ALERTS}/{mine}", None), ("GET", f"{ALERTS}/{mine}/triggers", None),
                               ("PUT", f"{ALERTS}/{mine}/status", {"status": "paused"}),
                               ("DELETE", f"{ALERTS}/{mine}", None)):
        answer = await client.request(method, path, json=body, headers=bearer(other))
        assert answer.status_code == 404 and answer.json()["code"] == "alert_not_found", (method, path)
    assert (await client.get(ALERTS, headers=bearer(other))).json()["items"] == []
    bad = await client.put(f"{ALERTS}/{mine}/status", json={"status": "triggered"}, headers=bearer(tokens))
    assert bad.status_code == 422


async def test_the_plan_limit_counts_live_alerts(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    limited = await client.put("/api/users/me/settings", json={"limits": {"alerts": 2}}, headers=bearer(tokens))
    assert limited.status_code == 200
    first = (await price_alert(client, tokens, condition="above", price="1")).json()["id"]
    await price_alert(client, tokens, condition="above", price="2")
    refused = await price_alert(client, tokens, condition="above", price="3")
    assert refused.status_code == 409 and refused.json()["code"] == "alert_limit_reached"
    assert refused.json()["limit"] == 2
    usage = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert usage["usage"]["alerts"] == 2
    await client.put(f"{ALERTS}/{first}/status", json={"status": "cancelled"}, headers=bearer(tokens))
    assert (await price_alert(client, tokens, condition="above", price="3")).status_code == 201


async def test_a_one_shot_alert_fires_once_and_notifies(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    market = Market(runtime)
    created = (await price_alert(client, tokens, condition="above", price="101", message="sell some")).json()
    await wait_indexed(runtime, created["id"])
    await tick(runtime, market, "100")
    await tick(runtime, market, "101.5")
    await tick(runtime, market, "102")
    await wait_for_notifications(runtime, profile["id"], 1, category="alerts")
    alert = (await client.get(f"{ALERTS}/{created['id']}", headers=bearer(tokens))).json()
    assert alert["status"] == "triggered" and alert["trigger_count"] == 1
    assert [t["value"] for t in await triggers(client, tokens, created["id"])] == ["101.5"]
    note = (await listing(client, tokens, category="alerts"))["items"]
    assert len(note) == 1 and note[0]["title"] == "Alert: BTC/USDT above 101"
    assert "sell some" in note[0]["body"] and note[0]["data"]["alert_id"] == created["id"]


async def test_a_recurring_alert_respects_its_cooldown(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    market = Market(runtime)
    created = (await price_alert(client, tokens, condition="below", price="99", recurring=True,
                                 cooldown_seconds=60)).json()
    await wait_indexed(runtime, created["id"])
    engine = await engine_of(runtime)
    await tick(runtime, market, "98")
    await wait_for(lambda: created["id"] in engine.cooling_rules, "the first firing")
    await tick(runtime, market, "97")  # cooling down
    clock.advance(30)
    await tick(runtime, market, "96")  # still cooling down
    clock.advance(31)
    await tick(runtime, market, "95")  # re-armed: fires again
    await wait_for(lambda: created["id"] in engine.cooling_rules, "the second firing")
    fired = await triggers(client, tokens, created["id"])
    assert [t["value"] for t in fired] == ["95", "98"]
    alert = (await client.get(f"{ALERTS}/{created['id']}", headers=bearer(tokens))).json()
    assert alert["status"] == "active" and alert["trigger_count"] == 2


async def test_crosses_and_percent_change_through_the_engine(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    market = Market(runtime)
    await tick(runtime, market, "100")
    cross = (await price_alert(client, tokens, condition="crosses", price="105", direction="up")).json()
    move = (await price_alert(client, tokens, condition="percent_change", percent="10", window="1m",
                              direction="down")).json()
    await wait_indexed(runtime, cross["id"])
    await wait_indexed(runtime, move["id"])
    engine = await engine_of(runtime)
    for price in ("104", "106"):  # 104 → 106 crosses 105 upwards
        await tick(runtime, market, price)
        clock.advance(30)
    await wait_for(lambda: cross["id"] not in engine.index, "the crossing")
    await tick(runtime, market, "95.3")  # vs 104 a minute ago: -8.4 %
    clock.advance(30)
    await tick(runtime, market, "95")  # vs 106 a minute ago: -10.4 %
    await wait_for(lambda: move["id"] not in engine.index, "the fall")
    assert [t["value"] for t in await triggers(client, tokens, cross["id"])] == ["106"]
    [fall] = await triggers(client, tokens, move["id"])
    assert fall["value"].startswith("-10.377")


async def test_two_evaluations_fire_an_alert_once(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    """Two engines (or a replay) evaluating the same tick race through the conditional UPDATE."""
    _, tokens = await new_user(client)
    runtime.services["alert_engine"].index = type(runtime.services["alert_engine"].index)()  # keep it out of the way
    created = (await price_alert(client, tokens, condition="above", price="1")).json()
    alert_id = uuid.UUID(created["id"])

    async def evaluate() -> bool:
        async with runtime.db.transaction() as session:
            return await fire(session, alert_id, now=clock.now(), value=__import__("decimal").Decimal("2")) is not None
    results = await asyncio.gather(evaluate(), evaluate(), evaluate())
    assert sorted(results) == [False, False, True]
    async with runtime.db.session() as session:
        count = await session.scalar(select(func.count()).select_from(AlertTrigger)
                                     .where(AlertTrigger.alert_id == alert_id))
    assert count == 1


async def test_position_pnl_and_exposure_alerts(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    market = Market(runtime)
    await market.book(bids=[("100", "50")], asks=[("101", "50")])
    await market.trade("100.5", "1")
    await place_ok(client, tokens, side="buy", type="market", quantity="10")  # ~1,010 of 10,000: ~10 % exposure
    gain = (await client.post(f"{ALERTS}/pnl", json={"scope": "position", "symbol": "BTC/USDT", "direction": "above",
                                                      "threshold": "5", "unit": "percent"},
                              headers=bearer(tokens))).json()
    exposure = (await client.post(f"{ALERTS}/risk", json={"measure": "exposure", "threshold": "5"},
                                  headers=bearer(tokens))).json()
    concentrated = (await client.post(f"{ALERTS}/risk", json={"measure": "concentration", "threshold": "50"},
                                      headers=bearer(tokens))).json()
    await wait_indexed(runtime, gain["id"])
    await wait_indexed(runtime, concentrated["id"])

    async def statuses() -> dict[str, str]:
        return {a["id"]: a["status"] for a in (await client.get(ALERTS, headers=bearer(tokens))).json()["items"]}

    engine = await engine_of(runtime)
    engine.request_sweep()  # exposure ~10 % ≥ 5 % fires; the position's P&L is still negative
    await wait_for(lambda: _is(statuses, exposure["id"], "triggered"), "the exposure alert")
    await market.trade("107", "1")  # +5.9 % on an entry of 101
    engine.request_sweep()
    await wait_for(lambda: _is(statuses, gain["id"], "triggered"), "the P&L alert")
    assert await statuses() == {gain["id"]: "triggered", exposure["id"]: "triggered", concentrated["id"]: "active"}
    await wait_for_notifications(runtime, profile["id"], 2, category="alerts")


async def _is(statuses, alert_id: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    return (await statuses()).get(alert_id) == status
