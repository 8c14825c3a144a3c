"""Authentication by X-API-Key (keys are managed by the next issue; the lookup lives here)."""

from __future__ import annotations

import uuid

from tests.helpers import bearer, new_user


async def _key(runtime, user_id: str, **kw) -> str:  # type: ignore[no-untyped-def]
    identity = runtime.services["identity"]
    async with runtime.db.session() as session:
        _, secret = await identity.create_api_key(session, user_id=uuid.UUID(user_id), name="bot", **kw)
    return secret


async def test_api_key_authenticates_with_its_scopes(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, _ = await new_user(client)
    key = await _key(runtime, profile["id"], scopes=["read"])
    assert key.startswith("tp_")
    me = await client.get("/api/users/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["id"] == profile["id"]
    # an API key has no session to log out of
    out = await client.post("/api/auth/logout", headers={"X-API-Key": key})
    assert out.status_code == 422 and out.json()["code"] == "no_session"


async def test_wrong_secret_does_not_lock_out_the_real_key(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, _ = await new_user(client)
    key = await _key(runtime, profile["id"], scopes=["read"])
    forged = key[:16] + "x" * (len(key) - 16)
    assert (await client.get("/api/users/me", headers={"X-API-Key": forged})).status_code == 401
    assert (await client.get("/api/users/me", headers={"X-API-Key": key})).status_code == 200
    assert (await client.get("/api/users/me", headers={"X-API-Key": "tp_garbage"})).json()["code"] == "invalid_api_key"


async def test_ip_allow_list(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, _ = await new_user(client)
    # the test client connects from 203.0.113.7
    allowed = await _key(runtime, profile["id"], scopes=["read"], allowed_ips=["203.0.113.0/24"])
    denied = await _key(runtime, profile["id"], scopes=["read"], allowed_ips=["198.51.100.0/24"])
    assert (await client.get("/api/users/me", headers={"X-API-Key": allowed})).status_code == 200
    resp = await client.get("/api/users/me", headers={"X-API-Key": denied})
    assert resp.status_code == 401 and resp.json()["code"] == "api_key_ip_not_allowed"


async def test_bearer_and_key_together_is_ambiguous(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    key = await _key(runtime, profile["id"], scopes=["read"])
    resp = await client.get("/api/users/me", headers={**bearer(tokens), "X-API-Key": key})
    assert resp.status_code == 401 and resp.json()["code"] == "ambiguous_credentials"
