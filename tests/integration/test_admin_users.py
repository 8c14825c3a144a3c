"""Admin user management: the admin gate on every route, search, plan, role, suspension, activity."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from tests.helpers import PASSWORD, bearer, login, new_user, register, unique_email
from tests.integration.admin_support import (
    admin_routes,
    create_key,
    fill_path,
    make_admin,
    recording_stop_hook,
    set_account,
)
from tradepilot.identity.lifecycle import StopReason
from tradepilot.identity.models import SecurityEvent
from tradepilot.identity.plans import PLANS
from tradepilot.identity.security_events import SecurityEventKind

BODIES = {"plan": {"plan": "pro"}, "role": {"role": "user"}, "suspend": {"reason": "test"}}


def _body(path: str) -> dict | None:
    return BODIES.get(path.rsplit("/", 1)[-1])


async def test_every_admin_route_refuses_everyone_but_admins(app, client, runtime) -> None:  # type: ignore[no-untyped-def]
    routes = admin_routes(app)
    assert len(routes) >= 7, routes  # the inventory really comes from the app
    user, user_tokens = await new_user(client)
    _, admin_tokens = await make_admin(client, runtime)
    read_key = await create_key(client, admin_tokens, ["read", "trade"])  # an admin's key without `admin`
    _, no2fa_tokens = await new_user(client)
    profile_no2fa = (await client.get("/api/users/me", headers=bearer(no2fa_tokens))).json()
    await set_account(runtime, profile_no2fa["id"], role="admin")
    for method, path in routes:
        url = fill_path(path, user_id=user["id"])
        kwargs = {"json": _body(path)} if _body(path) else {}
        anonymous = await client.request(method, url, **kwargs)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        as_user = await client.request(method, url, headers=bearer(user_tokens), **kwargs)
        assert as_user.status_code == 403 and as_user.json()["code"] == "admin_required", (method, path)
        as_key = await client.request(method, url, headers={"X-API-Key": read_key["key"]}, **kwargs)
        assert as_key.status_code == 403 and as_key.json()["code"] == "admin_required", (method, path)
        without_2fa = await client.request(method, url, headers=bearer(no2fa_tokens), **kwargs)
        assert without_2fa.status_code == 403, (method, path)
    # the refusals changed nothing
    me = (await client.get("/api/users/me", headers=bearer(user_tokens))).json()
    assert me["plan"] == "free" and me["role"] == "user"
    # and the gate does open for an admin, by session or by a key with the admin scope
    assert (await client.get("/api/admin/users", headers=bearer(admin_tokens))).status_code == 200
    admin_key = await create_key(client, admin_tokens, ["read", "admin"])
    by_key = await client.get(f"/api/admin/users/{user['id']}", headers={"X-API-Key": admin_key["key"]})
    assert by_key.status_code == 200


async def test_search_filter_and_paginate(client, runtime) -> None:  # type: ignore[no-untyped-def]
    _, admin = await make_admin(client, runtime)
    tag = uuid.uuid4().hex[:6]
    made = [await register(client, f"Find-{tag}-{i}@example.com") for i in range(5)]
    await register(client, unique_email("other"))
    found = await client.get("/api/admin/users", params={"q": f"FIND-{tag}"}, headers=bearer(admin))
    assert found.status_code == 200 and {u["id"] for u in found.json()["items"]} == {u["id"] for u in made}
    assert found.json()["next_cursor"] is None
    seen, cursor = [], None
    for _ in range(10):
        params = {"q": f"find-{tag}", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/admin/users", params=params, headers=bearer(admin))).json()
        assert len(page["items"]) <= 2
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(u["id"] for u in made) and len(set(seen)) == 5
    assert seen == [u["id"] for u in found.json()["items"]]  # the same order, newest first
    wildcard = await client.get("/api/admin/users", params={"q": "%"}, headers=bearer(admin))
    assert wildcard.json()["items"] == []  # `%` is a literal character, not a wildcard
    bad = await client.get("/api/admin/users", params={"cursor": "not-a-cursor"}, headers=bearer(admin))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    assert (await client.get("/api/admin/users", params={"plan": "platinum"}, headers=bearer(admin))).status_code == 422
    await client.put(f"/api/admin/users/{made[0]['id']}/plan", json={"plan": "enterprise"}, headers=bearer(admin))
    await client.post(f"/api/admin/users/{made[1]['id']}/suspend", json={"reason": "spam"}, headers=bearer(admin))
    by_plan = (await client.get("/api/admin/users", params={"plan": "enterprise"}, headers=bearer(admin))).json()
    assert [u["id"] for u in by_plan["items"]] == [made[0]["id"]]
    suspended = (await client.get("/api/admin/users", params={"status": "suspended"}, headers=bearer(admin))).json()
    assert [u["id"] for u in suspended["items"]] == [made[1]["id"]]
    assert suspended["items"][0]["suspension_reason"] == "spam"
    active = (await client.get("/api/admin/users", params={"status": "active", "q": f"find-{tag}"},
                               headers=bearer(admin))).json()
    assert made[1]["id"] not in {u["id"] for u in active["items"]} and len(active["items"]) == 4
    admins = (await client.get("/api/admin/users", params={"role": "admin"}, headers=bearer(admin))).json()
    assert len(admins["items"]) == 1 and admins["items"][0]["role"] == "admin"


async def test_get_user_and_unknown_id(client, runtime) -> None:  # type: ignore[no-untyped-def]
    _, admin = await make_admin(client, runtime)
    user = await register(client)
    got = await client.get(f"/api/admin/users/{user['id']}", headers=bearer(admin))
    body = got.json()
    assert got.status_code == 200 and body["email"] == user["email"] and body["status"] == "active"
    assert body["two_factor_enabled"] is False and "password_hash" not in body
    missing = await client.get(f"/api/admin/users/{uuid.uuid4()}", headers=bearer(admin))
    assert missing.status_code == 404 and missing.json()["code"] == "user_not_found"
    assert (await client.get("/api/admin/users/not-a-uuid", headers=bearer(admin))).status_code == 422


async def test_plan_change_takes_effect_on_limits_at_once(client, runtime) -> None:  # type: ignore[no-untyped-def]
    admin_profile, admin = await make_admin(client, runtime)
    user, tokens = await new_user(client)
    before = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert before["plan"] == "free" and before["limits"] == PLANS["free"].as_dict()
    resp = await client.put(f"/api/admin/users/{user['id']}/plan", json={"plan": "pro"}, headers=bearer(admin))
    assert resp.status_code == 200 and resp.json()["plan"] == "pro"
    after = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()  # the same token
    assert after["plan"] == "pro" and after["limits"] == PLANS["pro"].as_dict()
    assert (await client.get("/api/users/me", headers=bearer(tokens))).json()["plan"] == "pro"
    # the user's own (tighter) limits still apply on top of the new plan
    await client.put("/api/users/me/settings", json={"limits": {"api_keys": 2}}, headers=bearer(tokens))
    limits = (await client.get("/api/users/me/limits", headers=bearer(tokens))).json()
    assert limits["limits"]["api_keys"] == 2 and limits["plan_limits"]["api_keys"] == PLANS["pro"].api_keys
    bad = await client.put(f"/api/admin/users/{user['id']}/plan", json={"plan": "platinum"}, headers=bearer(admin))
    assert bad.status_code == 422
    async with runtime.db.session() as session:
        events = list(await session.scalars(select(SecurityEvent).where(
            SecurityEvent.user_id == uuid.UUID(user["id"]), SecurityEvent.kind == SecurityEventKind.ADMIN_ACTION)))
    assert len(events) == 1 and events[0].details["action"] == "plan_changed"
    assert events[0].details["admin_id"] == admin_profile["id"] and events[0].details["plan"] == "pro"


async def test_role_change_and_the_last_admin(client, runtime) -> None:  # type: ignore[no-untyped-def]
    first, first_tokens = await make_admin(client, runtime)
    alone = await client.put(f"/api/admin/users/{first['id']}/role", json={"role": "user"},
                             headers=bearer(first_tokens))
    assert alone.status_code == 409 and alone.json()["code"] == "last_admin"
    second, second_tokens = await new_user(client)
    await set_account(runtime, second["id"], totp_enabled_at=runtime.clock.now())
    assert (await client.get("/api/admin/users", headers=bearer(second_tokens))).status_code == 403
    promoted = await client.put(f"/api/admin/users/{second['id']}/role", json={"role": "admin"},
                                headers=bearer(first_tokens))
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert (await client.get("/api/admin/users", headers=bearer(second_tokens))).status_code == 200  # at once
    demoted = await client.put(f"/api/admin/users/{first['id']}/role", json={"role": "user"},
                               headers=bearer(first_tokens))
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"
    gone = await client.get("/api/admin/users", headers=bearer(first_tokens))
    assert gone.status_code == 403 and gone.json()["code"] == "admin_required"
    last = await client.put(f"/api/admin/users/{second['id']}/role", json={"role": "user"},
                            headers=bearer(second_tokens))
    assert last.status_code == 409 and last.json()["code"] == "last_admin"
    assert (await client.put(f"/api/admin/users/{second['id']}/role", json={"role": "root"},
                             headers=bearer(second_tokens))).status_code == 422


async def test_suspension_revokes_tokens_and_keys_at_once_and_blocks_login(client, runtime) -> None:  # type: ignore[no-untyped-def]
    admin_profile, admin = await make_admin(client, runtime)
    user, tokens = await new_user(client)
    other_device = await login(client, user["email"])
    key = await create_key(client, tokens, ["read", "trade"])
    for headers in (bearer(tokens), bearer(other_device), {"X-API-Key": key["key"]}):
        assert (await client.get("/api/users/me", headers=headers)).status_code == 200  # now cached
    with recording_stop_hook() as stops:
        resp = await client.post(f"/api/admin/users/{user['id']}/suspend", json={"reason": "chargeback"},
                                 headers=bearer(admin))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "suspended" and resp.json()["suspension_reason"] == "chargeback"
    assert [(s.user_id, s.reason) for s in stops] == [(uuid.UUID(user["id"]), StopReason.SUSPENDED)]
    for headers in (bearer(tokens), bearer(other_device), {"X-API-Key": key["key"]}):
        assert (await client.get("/api/users/me", headers=headers)).status_code == 401
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    blocked = await client.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert blocked.status_code == 403 and blocked.json()["code"] == "account_suspended"
    wrong = await client.post("/api/auth/login", json={"email": user["email"], "password": "not the password"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"  # no hint without it
    again = await client.post(f"/api/admin/users/{user['id']}/suspend", json={"reason": "x"}, headers=bearer(admin))
    assert again.status_code == 409 and again.json()["code"] == "already_suspended"
    itself = await client.post(f"/api/admin/users/{admin_profile['id']}/suspend", json={"reason": "x"},
                               headers=bearer(admin))
    assert itself.status_code == 409 and itself.json()["code"] == "cannot_suspend_self"
    empty = await client.post(f"/api/admin/users/{user['id']}/suspend", json={"reason": "  "}, headers=bearer(admin))
    assert empty.status_code == 422
    back = await client.post(f"/api/admin/users/{user['id']}/reactivate", headers=bearer(admin))
    assert back.status_code == 200 and back.json()["status"] == "active" and back.json()["suspended_at"] is None
    fresh = await login(client, user["email"])
    assert (await client.get("/api/users/me", headers=bearer(fresh))).status_code == 200
    assert (await client.get("/api/users/me", headers={"X-API-Key": key["key"]})).status_code == 401  # stays revoked
    twice = await client.post(f"/api/admin/users/{user['id']}/reactivate", headers=bearer(admin))
    assert twice.status_code == 409 and twice.json()["code"] == "not_suspended"


async def test_activity_shows_events_sessions_keys_and_usage(client, runtime) -> None:  # type: ignore[no-untyped-def]
    admin_profile, admin = await make_admin(client, runtime)
    user, tokens = await new_user(client)
    key = await create_key(client, tokens, ["read"])
    await client.put(f"/api/admin/users/{user['id']}/plan", json={"plan": "enterprise"}, headers=bearer(admin))
    resp = await client.get(f"/api/admin/users/{user['id']}/activity", headers=bearer(admin))
    assert resp.status_code == 200
    body = resp.json()
    kinds = [e["kind"] for e in body["security_events"]]
    assert kinds[0] == SecurityEventKind.ADMIN_ACTION and SecurityEventKind.LOGIN_SUCCEEDED in kinds
    assert SecurityEventKind.REGISTERED in kinds and SecurityEventKind.API_KEY_CREATED in kinds
    assert body["security_events"][0]["details"]["admin_id"] == admin_profile["id"]
    assert len(body["sessions"]) == 1 and body["usage"]["api_keys"] == 1
    assert [k["prefix"] for k in body["api_keys"]] == [key["prefix"]] and "key" not in body["api_keys"][0]
    assert body["limits"] == PLANS["enterprise"].as_dict() and body["user"]["plan"] == "enterprise"
    limited = (await client.get(f"/api/admin/users/{user['id']}/activity", params={"limit": 1},
                                headers=bearer(admin))).json()
    assert len(limited["security_events"]) == 1
