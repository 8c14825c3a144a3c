"""The backup endpoints over HTTP: admins only, password re-entry for the dangerous ones,
backups as jobs, download, restore with maintenance mode, and the per-user export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import PASSWORD, bearer, login, new_user
from tests.integration.admin_support import set_account
from tests.integration.backup_support import live_digests, reauthenticated_admin, service_of, stable
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.models_registry import metadata
from tradepilot.ops.backup.export import EXPORTED, user_tables
from tradepilot.ops.backup.maintenance import get_maintenance
from tradepilot.ops.backup.setup import restore_runner

ENDPOINTS = [("POST", "/api/system/backup"), ("GET", "/api/system/backup"),
             ("GET", "/api/system/backup/20260101T000000Z-0123abcd"), ("POST", "/api/system/restore"),
             ("GET", "/api/system/restore")]


@pytest.fixture
async def clocked(settings: Settings, clock: TestClock) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


async def test_a_normal_user_gets_403_on_every_endpoint(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(tokens))
    for method, path in ENDPOINTS:
        answer = await client.request(method, path, json={"backup_id": "20260101T000000Z-0123abcd"},
                                      headers=bearer(tokens))
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "admin_required"
    assert (await client.get("/api/system/backup")).status_code == 401


async def test_an_admin_needs_a_recent_password_to_back_up_or_restore(clocked, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    client, app = clocked
    runtime = app.state.runtime
    profile, tokens = await new_user(client)
    other = await login(client, profile["email"])  # a second session of the same admin
    await set_account(runtime, profile["id"], role="admin", totp_enabled_at=runtime.clock.now())
    record = await service_of(runtime).create()
    for path, body in (("/api/system/restore", {"backup_id": record.id}), ("/api/system/backup", None)):
        refused = await client.post(path, json=body, headers=bearer(tokens))
        assert refused.status_code == 403 and refused.json()["code"] == "reauthentication_required", refused.text
    assert (await client.get("/api/system/backup", headers=bearer(tokens))).status_code == 200  # reading is fine

    wrong = await client.post("/api/auth/reauthenticate", json={"password": "not the password"}, headers=bearer(tokens))
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_password"
    ok = await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(tokens))
    assert ok.status_code == 200
    clock.advance(timedelta(minutes=5, seconds=1).total_seconds())
    late = await client.post("/api/system/restore", json={"backup_id": record.id}, headers=bearer(tokens))
    assert late.status_code == 403 and late.json()["code"] == "reauthentication_required"
    # an API key can never pass: it has no session to re-authenticate
    key = (await client.post("/api/users/me/api-keys", json={"name": "ops", "scopes": ["read", "admin"]},
                             headers=bearer(tokens))).json()
    await client.post("/api/auth/reauthenticate", json={"password": PASSWORD}, headers=bearer(tokens))
    by_key = await client.post("/api/system/backup", headers={"X-API-Key": key["key"]})
    assert by_key.status_code == 403 and by_key.json()["code"] == "session_required"
    # another session of the same admin is not unlocked by this one's re-entry
    assert (await client.post("/api/system/backup", headers=bearer(other))).json()["code"] == "reauthentication_required"


async def test_backup_as_a_job_list_and_download(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    headers = await reauthenticated_admin(client, runtime)
    accepted = await client.post("/api/system/backup", headers=headers)
    assert accepted.status_code == 202, accepted.text
    await runtime.services["jobs"].drain(timeout=180)  # pg_dump and a verifying test restore: slow on a loaded machine
    job = (await client.get(accepted.json()["status_url"], headers=headers)).json()
    assert job["status"] == "succeeded", job
    backup_id = job["result"]["backup_id"]
    listed = (await client.get("/api/system/backup", headers=headers)).json()["items"]
    assert [b["id"] for b in listed] == [backup_id]
    assert listed[0]["verified"] is True and listed[0]["manifest"]["dialect"] == runtime.db.dialect
    assert listed[0]["manifest"]["tables"] > 20 and listed[0]["size"] > 0
    download = await client.get(f"/api/system/backup/{backup_id}", headers=headers)
    assert download.status_code == 200
    assert download.content == service_of(runtime).store.archive_path(backup_id).read_bytes()
    assert download.content.startswith(b"TPBACKUP")
    missing = await client.get("/api/system/backup/20260101T000000Z-0123abcd", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "backup_not_found"
    traversal = await client.get("/api/system/backup/..%2F..%2Fetc%2Fpasswd", headers=headers)
    assert traversal.status_code == 404
    bad = await client.post("/api/system/restore", json={"backup_id": "../x"}, headers=headers)
    assert bad.status_code == 422


async def test_restore_over_http_enters_maintenance_and_brings_the_data_back(client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                             runtime) -> None:
    headers = await reauthenticated_admin(client, runtime)
    _, user = await new_user(client)
    record = await service_of(runtime).create()
    before = stable(await live_digests(runtime))
    await client.put("/api/auth/profile", json={"display_name": "changed after the backup"}, headers=bearer(user))

    accepted = await client.post("/api/system/restore", json={"backup_id": record.id}, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["state"] == "running"
    again = await client.post("/api/system/restore", json={"backup_id": record.id}, headers=headers)
    assert again.status_code == 409 and again.json()["code"] == "restore_in_progress"
    await restore_runner(runtime).task
    state = (await client.get("/api/system/restore", headers=headers)).json()
    assert state["state"] == "succeeded", state
    after = stable(await live_digests(runtime))
    # identical except the restore's own audit entry in the security log
    assert {k: v for k, v in after.items() if k != "security_event"} == {
        k: v for k, v in before.items() if k != "security_event"}
    assert after["security_event"].rows == before["security_event"].rows + 1
    profile = (await client.get("/api/auth/profile", headers=bearer(user))).json()
    assert profile["display_name"] is None
    assert await get_maintenance(runtime).current() is None


async def test_maintenance_refuses_writes_but_not_reads(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    maintenance = get_maintenance(runtime)
    await maintenance.enter("test")
    try:
        refused = await client.put("/api/auth/profile", json={"display_name": "x"}, headers=bearer(tokens))
        assert refused.status_code == 503 and refused.json()["code"] == "maintenance"
        assert refused.headers["retry-after"] and refused.headers["x-request-id"]
        assert (await client.get("/api/auth/profile", headers=bearer(tokens))).status_code == 200
        assert "matching" not in runtime.services  # matching stopped
    finally:
        await maintenance.leave()
    assert (await client.put("/api/auth/profile", json={"display_name": "x"}, headers=bearer(tokens))).status_code == 200
    assert "matching" in runtime.services


async def test_the_export_covers_every_user_table_and_only_the_callers_rows(client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                            runtime, market) -> None:
    from tests.integration.orders_support import default_account, place_ok

    me, tokens = await new_user(client)
    _, other = await new_user(client)
    await place_ok(client, tokens, side="buy", type="market", quantity="0.001")
    await place_ok(client, other, side="buy", type="market", quantity="0.002")
    await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read"]}, headers=bearer(tokens))
    answer = await client.get("/api/users/me/export", headers=bearer(tokens))
    assert answer.status_code == 200
    assert "attachment" in answer.headers["content-disposition"]
    body = answer.json()
    assert set(body["tables"]) == {name for name in EXPORTED if name in metadata.tables}
    assert set(body["tables"]) | set(body["not_exported"]) == user_tables(metadata)
    account = await default_account(client, tokens)
    for name, rows in body["tables"].items():
        for row in rows:
            if "user_id" in row:
                assert row["user_id"] == me["id"], name
            if "account_id" in row:
                assert row["account_id"] == account, name
    for table in ("trading_order", "trading_fill", "ledger_posting", "trading_balance", "api_key", "user_session",
                  "security_event", "trading_account"):
        assert body["tables"][table], table
    assert len(body["tables"]["trading_order"]) == 1
    text = answer.text
    for secret_column in ("password_hash", "secret_hash", "token_hash", "totp_secret_encrypted", "code_hash"):
        assert secret_column not in text
    key = (await client.post("/api/users/me/api-keys", json={"name": "trade", "scopes": ["trade"]},
                             headers=bearer(tokens))).json()
    assert (await client.get("/api/users/me/export", headers={"X-API-Key": key["key"]})).json()["code"] == \
        "insufficient_scope"


async def test_the_cli_creates_lists_verifies_and_restores(client: httpx.AsyncClient, runtime, db_backend: str,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from tradepilot.cli import main

    async def off_loop(*args):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(*args)  # the app keeps serving (and finishing its transactions)

    settings = runtime.settings
    for name, value in {"DATABASE_URL": runtime.db.url, "DATA_DIR": str(settings.data_dir), "ENV": "test",
                        "SECRET_KEY": settings.secret_key.get_secret_value()}.items():
        monkeypatch.setenv(f"TRADEPILOT_{name}", value)
    monkeypatch.delenv("TRADEPILOT_REDIS_URL", raising=False)
    _, user = await new_user(client)
    assert await off_loop(main, ["backup", "create"]) == 0
    backup_id = service_of(runtime).store.list()[0].id
    assert service_of(runtime).store.get(backup_id).verified is True
    assert await off_loop(main, ["backup", "list"]) == 0
    assert backup_id in capsys.readouterr().out
    assert await off_loop(main, ["backup", "verify", backup_id]) == 0
    await client.put("/api/auth/profile", json={"display_name": "later"}, headers=bearer(user))
    assert await off_loop(main, ["backup", "restore", backup_id, "--yes"]) == 0
    await runtime.db.dispose()
    assert (await client.get("/api/auth/profile", headers=bearer(user))).json()["display_name"] is None
    assert await off_loop(main, ["backup", "verify", "20260101T000000Z-0123abcd"]) == 1
    assert "backup_not_found" in capsys.readouterr().err
