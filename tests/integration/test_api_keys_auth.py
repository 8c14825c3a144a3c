"""API keys: created once-shown, hashed, scoped, allow-listed, revocable at once."""

from __future__ import annotations

from sqlalchemy import select

from tests.helpers import bearer, new_user
from tradepilot.identity.models import ApiKey


async def _create(client, tokens, **body) -> dict:  # type: ignore[no-untyped-def]
    payload = {"name": "bot", "scopes": ["read"], **body}
    resp = await client.post("/api/users/me/api-keys", json=payload, headers=bearer(tokens))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_key_is_shown_once_and_stored_hashed(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    created = await _create(client, tokens, scopes=["read", "trade"])
    key = created["key"]
    assert key.startswith("tp_") and len(key.split("_", 2)[2]) >= 43  # >= 256 bits of base64url
    listed = (await client.get("/api/users/me/api-keys", headers=bearer(tokens))).json()
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert listed[0]["prefix"] == key[:15] and key not in str(listed)
    async with runtime.db.session() as session:
        row = await session.scalar(select(ApiKey))
    assert row is not None and key.split("_", 2)[2] not in (row.secret_hash, row.lookup) and len(row.secret_hash) == 64
    me = await client.get("/api/users/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["id"] == profile["id"]
    listed = (await client.get("/api/users/me/api-keys", headers=bearer(tokens))).json()
    assert listed[0]["last_used_at"] is not None
    out = await client.post("/api/auth/logout", headers={"X-API-Key": key})
    assert out.status_code == 422 and out.json()["code"] == "no_session"


async def test_revoked_key_stops_at_once(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    created = await _create(client, tokens)
    headers = {"X-API-Key": created["key"]}
    assert (await client.get("/api/users/me", headers=headers)).status_code == 200  # cached now
    assert (await client.delete(f"/api/users/me/api-keys/{created['id']}", headers=bearer(tokens))).status_code == 204
    assert (await client.get("/api/users/me", headers=headers)).status_code == 401
    assert (await client.get("/api/users/me/api-keys", headers=bearer(tokens))).json() == []


async def test_another_users_key_is_404(client) -> None:  # type: ignore[no-untyped-def]
    _, alice = await new_user(client)
    _, bob = await new_user(client)
    bobs = await _create(client, bob)
    resp = await client.delete(f"/api/users/me/api-keys/{bobs['id']}", headers=bearer(alice))
    assert resp.status_code == 404 and resp.json()["code"] == "api_key_not_found"
    assert (await client.get("/api/users/me", headers={"X-API-Key": bobs["key"]})).status_code == 200


async def test_admin_scope_needs_admin_role_and_key_limit(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    resp = await client.post("/api/users/me/api-keys", json={"name": "x", "scopes": ["admin"]}, headers=bearer(tokens))
    assert resp.status_code == 403 and resp.json()["code"] == "insufficient_role"
    for i in range(3):  # the free plan allows 3
        await _create(client, tokens, name=f"k{i}")
    resp = await client.post("/api/users/me/api-keys", json={"name": "one too many", "scopes": ["read"]},
                             headers=bearer(tokens))
    assert resp.status_code == 409 and resp.json()["code"] == "api_key_limit_reached"


async def test_wrong_secret_does_not_lock_out_the_real_key(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    key = (await _create(client, tokens))["key"]
    forged = key[:16] + "x" * (len(key) - 16)
    assert (await client.get("/api/users/me", headers={"X-API-Key": forged})).status_code == 401
    assert (await client.get("/api/users/me", headers={"X-API-Key": key})).status_code == 200
    assert (await client.get("/api/users/me", headers={"X-API-Key": "tp_garbage"})).json()["code"] == "invalid_api_key"


async def test_key_ip_allow_list(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    # the test client connects from 203.0.113.7
    allowed = (await _create(client, tokens, allowed_ips=["203.0.113.0/24"]))["key"]
    denied = (await _create(client, tokens, allowed_ips=["198.51.100.0/24"]))["key"]
    assert (await client.get("/api/users/me", headers={"X-API-Key": allowed})).status_code == 200
    resp = await client.get("/api/users/me", headers={"X-API-Key": denied})
    assert resp.status_code == 401 and resp.json()["code"] == "api_key_ip_not_allowed"


async def test_bearer_and_key_together_is_ambiguous(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    key = (await _create(client, tokens))["key"]
    resp = await client.get("/api/users/me", headers={**bearer(tokens), "X-API-Key": key})
    assert resp.status_code == 401 and resp.json()["code"] == "ambiguous_credentials"
