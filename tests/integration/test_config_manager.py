"""ConfigManager (issue 11 §3): typed sections, runtime changes that are validated as a whole,
take effect at once, reach every replica, are audited, and configuration backup and restore."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.helpers import PASSWORD, bearer, new_user, register
from tests.integration.admin_support import client_from
from tests.integration.backup_support import reauthenticated_admin
from tests.support import make_settings
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.identity.models import SecurityEvent
from tradepilot.ops.config.manager import config_manager
from tradepilot.ops.config.models import ConfigOverride

CONFIG = "/api/system/config"
AUTH_LIMIT = "TRADEPILOT_RATE_LIMIT_AUTH_PER_MINUTE"


@pytest.fixture
async def admin_headers(client: httpx.AsyncClient, runtime) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return await reauthenticated_admin(client, runtime)


async def test_a_normal_user_gets_403_and_changes_need_a_recent_password(client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                        runtime) -> None:
    _, user = await new_user(client)
    calls = [("GET", CONFIG, None), ("PATCH", CONFIG, {"settings": {"log_level": "INFO"}}),
             ("GET", CONFIG + "/backup", None), ("POST", CONFIG + "/restore", {"settings": {}})]
    for method, path, body in calls:
        answer = await client.request(method, path, json=body, headers=bearer(user))
        assert answer.status_code == 403 and answer.json()["code"] == "admin_required", (method, path)
    from tests.integration.admin_support import make_admin

    _, admin = await make_admin(client, runtime)
    assert (await client.get(CONFIG, headers=bearer(admin))).status_code == 200
    for method, path, body in calls[1::2]:
        answer = await client.request(method, path, json=body, headers=bearer(admin))
        assert answer.status_code == 403 and answer.json()["code"] == "reauthentication_required"


async def test_sections_are_typed_and_carry_no_secret(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                      admin_headers: dict[str, str]) -> None:
    manager = config_manager(runtime)
    security = manager.section("security")
    assert security.rate_limit_auth_per_minute == runtime.settings.rate_limit_auth_per_minute  # type: ignore[attr-defined]
    assert isinstance(manager.section("exchanges").paper_starting_balance, Decimal)  # type: ignore[attr-defined]
    body = (await client.get(CONFIG, headers=admin_headers)).json()
    assert set(body["sections"]) >= {"database", "exchanges", "security", "email", "notifications", "ai"}
    assert body["sections"]["security"]["TRADEPILOT_SECRET_KEY"] == "(secret)"
    assert body["sections"]["email"]["TRADEPILOT_SMTP_PASSWORD"] == "(secret)"
    assert AUTH_LIMIT in body["runtime_changeable"] and "TRADEPILOT_PORT" not in body["runtime_changeable"]
    text = json.dumps(body) + (await client.get(CONFIG + "/backup", headers=admin_headers)).text
    assert runtime.settings.secret_key.get_secret_value() not in text
    assert all(k.get_secret_value() not in text for k in runtime.settings.encryption_keys)


async def test_a_bad_change_names_the_variable_and_changes_nothing(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                                   admin_headers: dict[str, str]) -> None:
    before = runtime.settings.model_dump()
    answer = await client.patch(CONFIG, json={"settings": {"TRADEPILOT_LOG_LEVEL": "WARNING", AUTH_LIMIT: 0}},
                                headers=admin_headers)
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_setting"
    assert answer.json()["errors"] == [{"variable": AUTH_LIMIT, "reason": "Input should be greater than or equal to 1"}]
    other = await client.patch(CONFIG, json={"settings": {"TRADEPILOT_PORT": 9000, "no_such_thing": 1}},
                               headers=admin_headers)
    assert {e["variable"]: e["reason"] for e in other.json()["errors"]} == {
        "TRADEPILOT_PORT": "cannot change while running: set it in the environment and restart",
        "TRADEPILOT_NO_SUCH_THING": "no such setting"}
    assert runtime.settings.model_dump() == before  # all or nothing: the valid log level was not applied
    async with runtime.db.session() as session:
        assert (await session.scalars(select(ConfigOverride))).all() == []


async def test_a_change_takes_effect_at_once_is_audited_and_can_be_undone(client: httpx.AsyncClient, app: FastAPI,  # type: ignore[no-untyped-def]
                                                                          runtime, admin_headers) -> None:
    changed = await client.patch(CONFIG, json={"settings": {AUTH_LIMIT: 2}}, headers=admin_headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["changed"][AUTH_LIMIT]["new"] == 2
    # the sign-in limit of one address is now 2 a minute: the third attempt is refused
    async with client_from(app, "198.51.100.23") as elsewhere:
        email = (await register(elsewhere))["email"]
        codes = [(await elsewhere.post("/api/auth/login", json={"email": email, "password": PASSWORD})).status_code
                 for _ in range(2)]
    assert codes == [200, 429]  # the registration counted as the first
    async with runtime.db.session() as session:
        audit = (await session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "admin.action"))).all()
    assert [e.details["changes"] for e in audit if e.details.get("action") == "config_changed"] == \
        [{AUTH_LIMIT: {"old": 30, "new": 2}}]
    overrides = (await client.get(CONFIG, headers=admin_headers)).json()["overrides"]
    assert [(o["variable"], o["value"]) for o in overrides] == [(AUTH_LIMIT, 2)] and overrides[0]["updated_by"]
    reset = await client.patch(CONFIG, json={"settings": {AUTH_LIMIT: None}}, headers=admin_headers)
    assert reset.json()["changed"][AUTH_LIMIT] == {"old": 2, "new": 30}
    assert runtime.settings.rate_limit_auth_per_minute == 30
    assert (await client.get(CONFIG, headers=admin_headers)).json()["overrides"] == []


@pytest.fixture
async def replicas(database_url: str, redis_url: str, tmp_path) -> AsyncIterator[list[FastAPI]]:  # type: ignore[no-untyped-def]
    prefix = f"tptest:{uuid.uuid4().hex[:8]}:"

    def settings() -> Settings:
        return make_settings(database_url, data_dir=tmp_path / "var", redis_url=redis_url, redis_prefix=prefix,
                             monitoring_enabled=False)

    first, second = create_app(settings()), create_app(settings())
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        yield [first, second]


async def test_a_change_reaches_every_replica_and_a_new_one(replicas: list[FastAPI], database_url: str,  # type: ignore[no-untyped-def]
                                                            redis_url: str, tmp_path) -> None:
    first, second = replicas
    async with client_from(first, "203.0.113.50") as client:
        headers = await reauthenticated_admin(client, first.state.runtime)
        answer = await client.patch(CONFIG, json={"settings": {"backup_retention_count": 3, "log_level": "WARNING"}},
                                    headers=headers)
        assert answer.status_code == 200, answer.text
    for _ in range(200):
        if second.state.runtime.settings.backup_retention_count == 3:
            break
        await asyncio.sleep(0.05)
    assert second.state.runtime.settings.backup_retention_count == 3
    assert second.state.runtime.settings.log_level == "WARNING"
    late = create_app(make_settings(database_url, data_dir=tmp_path / "var", monitoring_enabled=False))
    async with late.router.lifespan_context(late):  # started after the change: reads the overrides
        assert late.state.runtime.settings.backup_retention_count == 3


async def test_a_replica_refuses_an_override_it_cannot_validate(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                                admin_headers: dict[str, str]) -> None:
    manager = config_manager(runtime)
    async with runtime.db.transaction() as session:  # as a newer version, with other rules, might store
        session.add(ConfigOverride(name="backup_retention_days", value=0, updated_by=None,
                                   updated_at=runtime.clock.now()))
        session.add(ConfigOverride(name="backup_retention_count", value=4, updated_by=None,
                                   updated_at=runtime.clock.now()))
    await manager.reload()
    assert runtime.settings.backup_retention_days == 30  # kept: the override is refused here
    assert runtime.settings.backup_retention_count == 4  # the valid one applies
    body = (await client.get(CONFIG, headers=admin_headers)).json()
    assert body["rejected_overrides"] == {
        "TRADEPILOT_BACKUP_RETENTION_DAYS": "TRADEPILOT_BACKUP_RETENTION_DAYS: Input should be greater than or equal to 1"}


async def test_configuration_backup_and_restore(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                admin_headers: dict[str, str]) -> None:
    document = (await client.get(CONFIG + "/backup", headers=admin_headers)).json()
    assert document["format"] == "tradepilot-config/1"
    assert "TRADEPILOT_SECRET_KEY" not in document["settings"] and "TRADEPILOT_ENCRYPTION_KEYS" not in document["settings"]
    await client.patch(CONFIG, json={"settings": {"email_from": "Ops <ops@example.com>"}}, headers=admin_headers)
    document["settings"]["TRADEPILOT_PORT"] = 9999  # differs, but needs a restart
    restored = await client.post(CONFIG + "/restore", json=document, headers=admin_headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["needs_restart"] == ["TRADEPILOT_PORT"]
    assert restored.json()["changed"] == {"TRADEPILOT_EMAIL_FROM": {"old": "Ops <ops@example.com>",
                                                                    "new": document["settings"]["TRADEPILOT_EMAIL_FROM"]}}
    assert runtime.settings.email_from == document["settings"]["TRADEPILOT_EMAIL_FROM"]
    assert runtime.settings.port != 9999
