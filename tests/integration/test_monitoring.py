"""System and monitoring endpoints (issue 11 §1): admins only, and what each one says is true —
error groups, uptime windows on a test clock, logs by request id, the orders counter, alert
rules that fire once and resolve."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select

from tests.helpers import PASSWORD, bearer, new_user
from tests.integration.admin_support import make_admin, set_account
from tests.integration.orders_support import ASKS, BIDS, Market, place, place_ok, wait_for
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.notifications.models import Notification
from tradepilot.ops.monitoring.models import UptimeSegment
from tradepilot.ops.monitoring.system import MonitoringSystem, monitoring_of
from tradepilot.ops.monitoring.uptime import Heartbeat

ENDPOINTS = [("GET", "/api/system/status"), ("GET", "/api/system/metrics"), ("GET", "/api/system/logs"),
             ("POST", "/api/system/restart"), ("GET", "/api/monitoring/performance"),
             ("GET", "/api/monitoring/errors"), ("GET", "/api/monitoring/uptime"),
             ("GET", "/api/monitoring/alerts"), ("POST", "/api/monitoring/alerts")]
RULE = {"name": "errors", "metric": "error_rate", "operator": ">", "threshold": 0.2, "window_seconds": 60}
HOUR = 3600.0


class Boom(RuntimeError):
    pass


class OtherBoom(LookupError):
    pass


def add_failing_routes(app: FastAPI) -> None:
    """Routes of the test's own that fail unexpectedly, as a bug would (the real middleware answers)."""
    async def boom(n: int) -> None:
        raise Boom(f"failure number {n} with Bearer eyJhbGciOiJI.secret.token")

    async def other() -> None:
        raise OtherBoom("another failure")

    app.add_api_route("/api/test/boom/{n}", boom, methods=["GET"])
    app.add_api_route("/api/test/other", other, methods=["GET"])


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    # no background heartbeats or evaluations: each test runs the steps on its test clock
    return make_settings(database_url, data_dir=tmp_path / "var", monitoring_enabled=False,
                         monitoring_heartbeat_seconds=HOUR)


@pytest.fixture
async def clocked(settings: Settings, clock: TestClock) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(settings, clock=clock)
    add_failing_routes(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


def monitoring(app: FastAPI) -> MonitoringSystem:
    return monitoring_of(app.state.runtime)


async def test_a_normal_user_gets_403_on_every_endpoint(clocked) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    _, tokens = await new_user(client)
    await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(tokens))
    for method, path in ENDPOINTS:
        answer = await client.request(method, path, json=RULE, headers=bearer(tokens))
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "admin_required"
        assert (await client.request(method, path, json=RULE)).status_code == 401
    # an admin without 2FA is refused too
    profile, admin = await new_user(client)
    await set_account(runtime, profile["id"], role="admin")
    assert (await client.get("/api/system/status", headers=bearer(admin))).json()["code"] == \
        "two_factor_required_for_admin"
    # an admin with 2FA reads everything; a restart also needs the password re-entered
    _, admin = await make_admin(client, runtime)
    for method, path in ENDPOINTS:
        if method == "GET":
            assert (await client.get(path, headers=bearer(admin))).status_code == 200, path
    refused = await client.post("/api/system/restart", headers=bearer(admin))
    assert refused.status_code == 403 and refused.json()["code"] == "reauthentication_required"
    await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(admin))
    unserved = await client.post("/api/system/restart", headers=bearer(admin))  # not under `tradepilot serve`
    assert unserved.status_code == 409 and unserved.json()["code"] == "restart_unavailable"


async def test_status_reports_each_component(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    _, admin = await make_admin(client, app.state.runtime)
    await monitoring(app).beat()
    body = (await client.get("/api/system/status", headers=bearer(admin))).json()
    components = body["components"]
    assert components["database"]["state"] == "up" and components["database"]["last_error"] is None
    assert components["redis"]["state"] == "disabled"
    assert components["feeds"]["state"] == "waiting"  # no market trade seen yet
    assert components["job_queue"]["state"] == "up" and components["job_queue"]["queued"] >= 0
    assert components["strategies"]["state"] in ("up", "not_available")
    assert [r["replica_id"] for r in body["replicas"]] == [monitoring(app).replica_id]
    assert body["mode"]["environment"] == "test" and body["mode"]["maintenance"] is False
    await Market(app.state.runtime).trade("60000", "0.1")
    feeds = (await client.get("/api/system/status", headers=bearer(admin))).json()["components"]["feeds"]
    assert feeds["state"] == "up" and feeds["staleness_seconds"] == 0
    clock.advance(120)
    feeds = (await client.get("/api/system/status", headers=bearer(admin))).json()["components"]["feeds"]
    assert feeds["state"] == "stale" and feeds["last_error"] == "no market trade for 120 s"


async def test_two_failures_on_one_route_make_one_group(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    _, admin = await make_admin(client, app.state.runtime)
    first_at = clock.now()
    assert (await client.get("/api/test/boom/1")).status_code == 500
    clock.advance(30)
    failed = await client.get("/api/test/boom/2", headers={"X-Request-ID": "second-failure-0001"})
    assert failed.status_code == 500 and failed.json()["code"] == "internal_error"
    assert (await client.get("/api/test/other")).status_code == 500
    groups = (await client.get("/api/monitoring/errors", headers=bearer(admin))).json()["items"]
    by_route = {g["route"]: g for g in groups}
    assert set(by_route) == {"/api/test/boom/{n}", "/api/test/other"}
    boom = by_route["/api/test/boom/{n}"]
    assert boom["count"] == 2 and boom["exception_type"].endswith("Boom")
    assert boom["first_seen_at"].startswith(first_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert boom["last_seen_at"].startswith((first_at + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert boom["last_request_id"] == "second-failure-0001"
    assert "raise Boom" in boom["sample_trace"] and "failure number 2" in boom["sample_trace"]
    assert "secret.token" not in str(groups) and "[redacted]" in boom["message"]
    assert by_route["/api/test/other"]["count"] == 1
    # persisted: another failure adds to the same row, read back by a fresh query
    await client.get("/api/test/boom/3")
    groups = (await client.get("/api/monitoring/errors", headers=bearer(admin))).json()["items"]
    assert {g["route"]: g["count"] for g in groups} == {"/api/test/boom/{n}": 3, "/api/test/other": 1}


async def test_an_outage_on_the_test_clock_lands_in_the_right_window(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    beats = monitoring(app).heartbeat
    for hour in range(8 * 24):  # eight days of hourly heartbeats (the interval of this test's settings)
        await beats.beat()
        if hour == 3 * 24:  # five days before the end: a 60 s outage beyond the vouched two intervals
            outage_start = clock.now() + timedelta(seconds=2 * HOUR)
            clock.advance(2 * HOUR + 60)
        else:
            clock.advance(HOUR)
    await beats.beat()
    _, admin = await make_admin(client, runtime)  # signed in now: a token from eight days ago has expired
    windows = {w["window"]: w for w in (await client.get("/api/monitoring/uptime", headers=bearer(admin)))
               .json()["windows"]}
    assert windows["24h"]["down_seconds"] == 0 and windows["24h"]["availability"] == 1.0
    assert windows["7d"]["down_seconds"] == 60 and windows["30d"]["down_seconds"] == 60
    assert [o["seconds"] for o in windows["7d"]["outages"]] == [60.0]
    assert windows["7d"]["outages"][0]["start"].startswith(outage_start.strftime("%Y-%m-%dT%H:%M:%S"))
    assert windows["30d"]["observed_seconds"] == pytest.approx(8 * 24 * HOUR + HOUR + 60)  # since the first beat
    assert windows["7d"]["availability"] == pytest.approx(1 - 60 / (7 * 24 * HOUR))
    # a restart counts: a clean stop, then 100 s until the next process's first heartbeat
    await beats.stop()
    clock.advance(100)
    await Heartbeat(runtime.db, clock, replica_id="next-process", interval=HOUR).beat()
    windows = {w["window"]: w for w in (await client.get("/api/monitoring/uptime", headers=bearer(admin)))
               .json()["windows"]}
    assert windows["24h"]["down_seconds"] == 100 and windows["7d"]["down_seconds"] == 160


async def test_logs_by_request_id_are_exactly_that_requests_records(clocked) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    _, admin = await make_admin(client, app.state.runtime)
    await client.get("/api/auth/profile", headers={**bearer(admin), "X-Request-ID": "wanted-request-01"})
    await client.get("/api/auth/profile", headers={**bearer(admin), "X-Request-ID": "other-request-02"})
    await client.get("/api/test/boom/7", headers={"X-Request-ID": "wanted-request-01"})  # same id, reused
    logging.getLogger("tradepilot.test").warning("a token went by: %s", "Bearer eyJhbGciOiJI.secret.token")
    answer = await client.get("/api/system/logs", params={"request_id": "wanted-request-01"}, headers=bearer(admin))
    items = answer.json()["items"]
    assert items and all(e["request_id"] == "wanted-request-01" for e in items)
    access = [(e["path"], e["status"]) for e in items if e["logger"] == "tradepilot.access"]
    assert sorted(access) == [("/api/auth/profile", 200), ("/api/test/boom/7", 500)]
    errors = [e for e in items if e["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["route"] == "/api/test/boom/{n}" and "Boom" in errors[0]["exc_info"]
    assert "secret.token" not in answer.text
    assert all(e["request_id"] != "other-request-02" for e in items)
    only_errors = (await client.get("/api/system/logs", params={"level": "ERROR"}, headers=bearer(admin))).json()
    assert {e["level"] for e in only_errors["items"]} == {"ERROR"}
    mine = (await client.get("/api/system/logs", params={"logger": "tradepilot.test"}, headers=bearer(admin))).json()
    assert [e["message"] for e in mine["items"]] == ["a token went by: Bearer [redacted]"]
    no_file = await client.get("/api/system/logs", params={"source": "file"}, headers=bearer(admin))
    assert no_file.status_code == 409 and no_file.json()["code"] == "log_file_not_configured"


async def test_the_orders_counter_rises_by_the_orders_placed(clocked) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    await Market(runtime).book(BIDS, ASKS)
    _, admin = await make_admin(client, runtime)
    _, trader = await new_user(client)

    async def summary() -> dict:
        return (await client.get("/api/system/metrics", headers=bearer(admin))).json()  # type: ignore[no-any-return]

    before = await summary()
    await place_ok(client, trader, side="buy", type="limit", quantity="0.001", price="50000")
    await place_ok(client, trader, side="buy", type="limit", quantity="0.001", price="50010")
    await place_ok(client, trader, side="buy", type="market", quantity="0.01")
    refused = await place(client, trader, side="buy", type="market", quantity="1000")
    assert refused.status_code == 422
    after = await summary()
    assert after["orders"]["total"] - before["orders"]["total"] == 3
    assert after["orders"]["by_type_side"]["side=buy,type=limit"] - \
        before["orders"]["by_type_side"].get("side=buy,type=limit", 0) == 2
    assert after["requests"]["total"] > before["requests"]["total"]
    assert after["process"]["resident_memory_bytes"] > 0 and after["latency"]["count"] > 0

    async def filled() -> bool:
        return (await summary())["fills"]["total"] - before["fills"]["total"] >= 1

    await wait_for(filled, "the market order's fill to be relayed")
    performance = (await client.get("/api/monitoring/performance", headers=bearer(admin))).json()
    routes = {(r["method"], r["route"]): r for r in performance["routes"]}
    orders = routes[("POST", "/api/trading/orders")]
    assert orders["count"] == 4 and orders["p50_ms"] is not None and orders["p99_ms"] >= orders["p50_ms"]
    assert performance["slowest"][0]["p95_ms"] == max(r["p95_ms"] for r in performance["routes"])


async def test_a_rule_fires_once_and_resolves(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    system = monitoring(app)
    profile, admin = await make_admin(client, runtime)
    created = await client.post("/api/monitoring/alerts", json=RULE, headers=bearer(admin))
    assert created.status_code == 201, created.text
    assert (await client.post("/api/monitoring/alerts", json=RULE, headers=bearer(admin))).json()["code"] == \
        "alert_rule_exists"
    bad = await client.post("/api/monitoring/alerts", json={**RULE, "name": "x", "metric": "cpu"},
                            headers=bearer(admin))
    assert bad.status_code == 422

    async def notifications() -> list[str]:
        async with runtime.db.session() as session:
            rows = await session.scalars(select(Notification.title).where(Notification.user_id == uuid.UUID(profile["id"]))
                                         .order_by(Notification.created_at))
            return list(rows)

    assert await system.evaluate() == []  # the baseline: nothing measured yet
    for n in range(2):
        await client.get(f"/api/test/boom/{n}")
    for _ in range(2):
        await client.get("/health")
    clock.advance(61)
    assert await system.evaluate() == [("errors", "firing")]
    assert await system.evaluate() == []  # still failing: no second notification
    clock.advance(61)
    assert await system.evaluate() == []  # nothing in this window: the state stays
    assert await notifications() == ["Monitoring alert firing: errors"]
    for _ in range(10):
        await client.get("/health")
    clock.advance(61)
    assert await system.evaluate() == [("errors", "ok")]
    assert await system.evaluate() == []
    assert await notifications() == ["Monitoring alert firing: errors", "Monitoring alert resolved: errors"]
    rule = (await client.get("/api/monitoring/alerts", headers=bearer(admin))).json()["items"][0]
    assert rule["state"] == "ok" and rule["last_value"] == 0 and rule["resolved_at"] is not None
    assert rule["fired_by"] == system.replica_id


async def test_a_rule_fired_by_a_replica_that_is_gone_is_resolved_by_another(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    _, admin = await make_admin(client, runtime)
    rule = {"name": "disk", "metric": "disk_free_percent", "operator": "<", "threshold": 101, "window_seconds": 60}
    await client.post("/api/monitoring/alerts", json=rule, headers=bearer(admin))
    gone = MonitoringSystem(runtime)  # another replica, which never heartbeats again after firing
    assert await gone.evaluate() == [("disk", "firing")]
    here = monitoring(app)
    assert await here.evaluate() == []  # ours would fire it too: already firing, once is enough
    await client.request("POST", "/api/monitoring/alerts", json={**rule, "name": "backups", "metric":
                         "backup_age_hours", "operator": ">", "threshold": 24}, headers=bearer(admin))
    changes = await here.evaluate()
    assert ("backups", "firing") in changes  # no backup at all: infinitely old
    async with runtime.db.transaction() as session:
        from sqlalchemy import update

        from tradepilot.ops.monitoring.models import MonitoringRule
        await session.execute(update(MonitoringRule).where(MonitoringRule.name == "disk").values(threshold=0))
    assert await here.evaluate() == [("disk", "ok")]  # the replica that fired it is not alive


async def test_the_periodic_step_persists_errors_evaluates_and_logs_performance(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    system = monitoring(app)
    _, admin = await make_admin(client, app.state.runtime)
    await client.post("/api/monitoring/alerts", json=RULE, headers=bearer(admin))
    await system.tick()
    await client.get("/api/test/boom/1")
    await client.get("/health")
    clock.advance(61)
    await system.tick()
    async with app.state.runtime.db.session() as session:  # written by the step, not by a read of /errors
        from tradepilot.ops.monitoring.models import ErrorGroup, MonitoringRule

        assert [g.count for g in await session.scalars(select(ErrorGroup))] == [1]
        assert (await session.scalar(select(MonitoringRule.state))) == "firing"
    lines = [e for e in system.logs.records() if e["logger"] == "tradepilot.ops.monitoring"
             and e["message"] == "performance"]
    assert len(lines) == 2  # once a minute on the runtime clock
    assert lines[-1]["error_rate"] == 0.5 and lines[-1]["window_seconds"] == 61.0
    assert lines[-1]["p95_ms"] is not None


async def test_heartbeats_survive_a_restore_that_replaced_their_segment(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    _, app = clocked
    runtime = app.state.runtime
    beats = monitoring(app).heartbeat
    await beats.beat()
    async with runtime.db.transaction() as session:  # as a restore of a backup taken before this process started
        await session.execute(delete(UptimeSegment))
    clock.advance(HOUR / 2)
    await beats.beat()  # within the vouched interval, but its segment is gone: a new one starts
    async with runtime.db.session() as session:
        rows = (await session.execute(select(UptimeSegment.started_at, UptimeSegment.last_beat_at))).all()
    assert rows == [(clock.now(), clock.now())]
