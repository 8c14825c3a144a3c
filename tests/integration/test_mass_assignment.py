"""Mass assignment: no user-writable endpoint lets a user set role, plan, suspension, email
verification, limits above the plan, or someone else's id.

The routes come from the app's OpenAPI document, so every new POST/PUT/PATCH/DELETE is
covered without editing this test. Admin routes are excluded (they are admin-only, see
``test_admin_users``).
"""

from __future__ import annotations

import uuid
from typing import Any

import jwt
from sqlalchemy import func, select

from tests.helpers import bearer, new_user
from tests.integration.admin_support import (
    ADMIN_PREFIX,
    WRITE_METHODS,
    client_from,
    create_key,
    fill_path,
    routes_of,
)
from tradepilot.identity.models import ApiKey, User, UserSession
from tradepilot.identity.plans import LIMIT_NAMES, PLANS, plan_limits

# fields no user may set, with the values an attacker would send
FORBIDDEN_FIELDS = ("role", "plan", "is_suspended", "suspended_at", "email_verified", "email_verified_at",
                    "is_active", "totp_enabled_at", "user_id", "id", "owner_id")


def _attack(victim_id: str) -> dict[str, Any]:
    return {"role": "admin", "plan": "enterprise", "is_suspended": False, "suspended_at": None,
            "email_verified": True, "email_verified_at": "2026-01-01T00:00:00Z", "is_active": True,
            "totp_enabled_at": None, "user_id": victim_id, "id": victim_id, "owner_id": victim_id}


def _above_every_plan() -> dict[str, int]:
    return {name: max(getattr(p, name) for p in PLANS.values()) + 1 for name in LIMIT_NAMES}


def _resolve(spec: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Every property a request schema declares, through $ref / allOf / anyOf / oneOf."""
    if not schema:
        return {}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _resolve(spec, spec["components"]["schemas"][name])
    props = dict(schema.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for part in schema.get(key, []):
            props.update(_resolve(spec, part))
    return props


SYSTEM_PREFIX = "/api/system/"
MONITORING_PREFIX = "/api/monitoring/"  # the operator's rules: admin-only, like /api/system/


def _body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    body = spec["paths"][path][method.lower()].get("requestBody")
    if body is None:
        return None
    return body["content"].get("application/json", {}).get("schema", {})


async def _snapshot(runtime, user_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    uid = uuid.UUID(user_id)
    async with runtime.db.session() as session:
        user = await session.get(User, uid)
        live_sessions = await session.scalar(select(func.count()).select_from(UserSession).where(
            UserSession.user_id == uid, UserSession.revoked_at.is_(None)))
        keys = list(await session.scalars(select(ApiKey.id).where(ApiKey.user_id == uid)))
    assert user is not None
    return {"role": user.role, "plan": user.plan, "suspended_at": user.suspended_at, "is_active": user.is_active,
            "email_verified_at": user.email_verified_at, "totp_enabled_at": user.totp_enabled_at,
            "limits": dict((user.settings or {}).get("limits") or {}), "sessions": live_sessions, "keys": keys}


def _assert_untouched(before: dict[str, Any], after: dict[str, Any], route: str) -> None:
    for field in ("role", "plan", "suspended_at", "is_active", "email_verified_at", "totp_enabled_at"):
        assert after[field] == before[field], f"{route} changed {field}: {before[field]!r} -> {after[field]!r}"
    caps = plan_limits(after["plan"])
    assert all(v <= getattr(caps, k) for k, v in after["limits"].items()), f"{route} set limits above the plan"


async def _attack_route(spec, runtime, client, method: str, path: str, attack: dict[str, Any],  # type: ignore[no-untyped-def]
                        query: dict[str, str]) -> int:
    """A fresh user sends ``attack`` to one route; 1 if the body was refused with 422."""
    route = f"{method} {path}"
    attacker, tokens = await new_user(client)
    ids = {"session_id": jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]}
    if "{key_id}" in path:
        ids["key_id"] = (await create_key(client, tokens, ["read"]))["id"]
    url = fill_path(path, **ids)
    before = await _snapshot(runtime, attacker["id"])
    schema = _body_schema(spec, method, path)
    declared = _resolve(spec, schema)
    assert not set(declared) & set(FORBIDDEN_FIELDS), f"{route} declares {set(declared) & set(FORBIDDEN_FIELDS)}"
    resp = await client.request(method, url, params=query, json=attack, headers=bearer(tokens))
    assert resp.status_code < 500, (route, resp.text)
    refused = 0
    if schema is not None and resp.status_code != 404:
        assert resp.status_code == 422, (route, resp.status_code, resp.text)
        # a body that is a tagged union (POST /api/trading/accounts: paper | live) names the
        # refused field after the member's tag: "paper.role" is the top-level "role"
        rejected = {e["field"] for e in resp.json()["errors"] if e["code"] == "extra_forbidden"}
        assert rejected >= set(attack), f"{route} did not refuse {set(attack) - rejected}"
        refused = 1
    if "limits" in declared:  # a legitimate field: the user's own limits may only tighten the plan
        raised = await client.request(method, url, json={"limits": _above_every_plan()}, headers=bearer(tokens))
        assert raised.status_code == 422 and raised.json()["code"] == "limit_above_plan", (route, raised.text)
    _assert_untouched(before, await _snapshot(runtime, attacker["id"]), route)
    return refused


async def test_no_writable_endpoint_accepts_privileged_fields(app, client, runtime) -> None:  # type: ignore[no-untyped-def]
    spec = app.openapi()
    # admin-only routes are excluded: /api/admin/*, the plan's /api/system/* (backup, restore,
    # restart, configuration) and /api/monitoring/* (operator alert rules)
    writable = [(m, p) for m, p in routes_of(app)
                if m in WRITE_METHODS and not p.startswith((ADMIN_PREFIX, SYSTEM_PREFIX, MONITORING_PREFIX))]
    assert len(writable) >= 15 and ("DELETE", "/api/users/me") in writable  # the inventory is the real app's
    victim, victim_tokens = await new_user(client)
    await create_key(client, victim_tokens, ["read"])
    victim_before = await _snapshot(runtime, victim["id"])
    attack = _attack(victim["id"])
    query = {k: str(v) for k, v in attack.items() if v is not None}
    refused_with_422 = 0
    for n, (method, path) in enumerate(writable):
        route = f"{method} {path}"
        operation = spec["paths"][path][method.lower()]
        declared_query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        assert not declared_query & set(FORBIDDEN_FIELDS), f"{route} takes {declared_query & set(FORBIDDEN_FIELDS)}"
        async with client_from(app, f"198.51.100.{n + 1}") as attacker_client:  # own address: own sign-in budget
            refused_with_422 += await _attack_route(spec, runtime, attacker_client, method, path, attack, query)
    assert refused_with_422 >= 10
    victim_after = await _snapshot(runtime, victim["id"])
    assert victim_after == victim_before, "an attacker's request changed another user's account"
    me = await client.get("/api/users/me", headers=bearer(victim_tokens))
    assert me.status_code == 200 and me.json()["role"] == "user" and me.json()["plan"] == "free"


async def test_registration_cannot_choose_role_or_plan(client, runtime) -> None:  # type: ignore[no-untyped-def]
    """The most tempting target, spelled out: each privileged field alone is refused."""
    for field, value in (("role", "admin"), ("plan", "enterprise"), ("email_verified", True),
                         ("is_suspended", False), ("id", str(uuid.uuid4()))):
        body = {"email": f"ma-{uuid.uuid4().hex[:8]}@example.com", "password": "a sturdy test passphrase",
                field: value}
        resp = await client.post("/api/auth/register", json=body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, (field, resp.text)
    async with runtime.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0
