"""Registration, login, refresh rotation, logout, sessions — on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.helpers import PASSWORD, bearer, login, new_user, register, unique_email


async def test_register_login_and_profile(client) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    profile = await register(client, email.upper())
    assert profile["email"] == email and profile["role"] == "user" and profile["email_verified"] is False
    tokens = await login(client, email)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    me = await client.get("/api/users/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json() == profile
    same = await client.get("/api/auth/profile", headers=bearer(tokens))
    assert same.json() == me.json()


async def test_duplicate_email_conflicts(client) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    await register(client, email)
    resp = await client.post("/api/auth/register", json={"email": email.title(), "password": PASSWORD})
    assert resp.status_code == 409 and resp.json()["code"] == "email_taken"


@pytest.mark.parametrize(("password", "code"), [("short", "weak_password"), ("password123", "common_password")])
async def test_register_refuses_weak_passwords(client, password, code) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/auth/register", json={"email": unique_email(), "password": password})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json" and resp.json()["code"] == code


async def test_wrong_password_and_unknown_email_look_the_same(client) -> None:  # type: ignore[no-untyped-def]
    profile = await register(client)
    wrong = await client.post("/api/auth/login", json={"email": profile["email"], "password": "not the password"})
    unknown = await client.post("/api/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] and wrong.json()["code"] == "invalid_credentials"


async def test_profile_update_validates(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    ok = await client.put("/api/users/me", json={"display_name": "Ada", "timezone": "Europe/Zurich"},
                          headers=bearer(tokens))
    assert ok.status_code == 200 and ok.json()["timezone"] == "Europe/Zurich" and ok.json()["display_name"] == "Ada"
    bad_zone = await client.put("/api/users/me", json={"timezone": "Mars/Olympus"}, headers=bearer(tokens))
    assert bad_zone.status_code == 422
    unknown_field = await client.put("/api/auth/profile", json={"role": "admin"}, headers=bearer(tokens))
    assert unknown_field.status_code == 422 and unknown_field.json()["code"] == "validation_error"
    me = await client.get("/api/users/me", headers=bearer(tokens))
    assert me.json()["role"] == "user" and me.json()["timezone"] == "Europe/Zurich"


async def test_refresh_rotates_and_reuse_revokes_session(client) -> None:  # type: ignore[no-untyped-def]
    _, first = await new_user(client)
    rotated = await client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/users/me", headers=bearer(second))).status_code == 200
    # an attacker replays the stolen, already-rotated token
    replay = await client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["code"] == "refresh_token_reused"
    # the whole session is gone: the legitimate holder's newer tokens no longer work either
    assert (await client.get("/api/users/me", headers=bearer(second))).status_code == 401
    again = await client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 401


async def test_unknown_refresh_token(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post("/api/auth/refresh", json={"refresh_token": "rt_nonsense"})
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_refresh_token"


async def test_logout_takes_effect_immediately(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    assert (await client.get("/api/users/me", headers=bearer(tokens))).status_code == 200  # warm the cache
    assert (await client.post("/api/auth/logout", headers=bearer(tokens))).status_code == 204
    after = await client.get("/api/users/me", headers=bearer(tokens))
    assert after.status_code == 401 and after.json()["code"] == "session_revoked"
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


async def test_sessions_list_and_revoke(client) -> None:  # type: ignore[no-untyped-def]
    profile, laptop = await new_user(client)
    phone = await login(client, profile["email"])
    listed = await client.get("/api/auth/sessions", headers=bearer(laptop))
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    phone_sid = jwt.decode(phone["access_token"], options={"verify_signature": False})["sid"]
    assert (await client.delete(f"/api/auth/sessions/{phone_sid}", headers=bearer(laptop))).status_code == 204
    assert (await client.get("/api/users/me", headers=bearer(phone))).status_code == 401
    assert (await client.get("/api/users/me", headers=bearer(laptop))).status_code == 200
    assert len((await client.get("/api/auth/sessions", headers=bearer(laptop))).json()) == 1


async def test_other_users_session_is_404_and_untouched(client) -> None:  # type: ignore[no-untyped-def]
    _, alice = await new_user(client)
    _, bob = await new_user(client)
    bob_sid = jwt.decode(bob["access_token"], options={"verify_signature": False})["sid"]
    resp = await client.delete(f"/api/auth/sessions/{bob_sid}", headers=bearer(alice))
    assert resp.status_code == 404 and resp.json()["code"] == "session_not_found"
    missing = await client.delete("/api/auth/sessions/00000000-0000-4000-8000-000000000000", headers=bearer(alice))
    assert missing.status_code == 404 and missing.json()["code"] == resp.json()["code"]
    assert (await client.get("/api/users/me", headers=bearer(bob))).status_code == 200


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _access_claims(client) -> tuple[dict, dict, str]:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    token = tokens["access_token"]
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False}), token


async def test_alg_none_is_rejected(client) -> None:  # type: ignore[no-untyped-def]
    _, claims, _ = await _access_claims(client)
    forged = f"{_b64({'alg': 'none', 'typ': 'at+jwt'})}.{_b64(claims)}."
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401


async def test_wrong_signature_is_rejected(client) -> None:  # type: ignore[no-untyped-def]
    header, claims, _ = await _access_claims(client)
    forged = jwt.encode(claims, "attacker-guess-of-a-signing-key-0123456789", algorithm="HS256", headers={"typ": header["typ"]})
    assert (await client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


@pytest.mark.parametrize("change", [{"aud": "someone-else"}, {"iss": "evil"}, {"exp": 1_000_000}])
async def test_wrong_audience_issuer_or_expired(client, runtime, change) -> None:  # type: ignore[no-untyped-def]
    header, claims, _ = await _access_claims(client)
    key = runtime.services["identity"].tokens._jwt_key  # re-sign with the real key: only the claim is wrong
    forged = jwt.encode({**claims, **change}, key, algorithm="HS256", headers={"typ": header["typ"]})
    assert (await client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_expired_by_the_clock(client, runtime) -> None:  # type: ignore[no-untyped-def]
    header, claims, _ = await _access_claims(client)
    key = runtime.services["identity"].tokens._jwt_key
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 1000, "exp": now - 100}, key, algorithm="HS256",
                         headers={"typ": header["typ"]})
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_token"


async def test_refresh_token_used_as_access_token(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert resp.status_code == 401


async def test_missing_and_malformed_credentials(client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.get("/api/users/me")).json()["code"] == "not_authenticated"
    basic = await client.get("/api/users/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


async def test_no_response_leaks_hashes_or_secrets(client, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    bodies = [
        (await client.get("/api/users/me", headers=bearer(tokens))).text,
        (await client.get("/api/auth/sessions", headers=bearer(tokens))).text,
        (await client.put("/api/users/me", json={"display_name": "x"}, headers=bearer(tokens))).text,
        (await client.post("/api/auth/register", json={"email": profile["email"], "password": PASSWORD})).text,
    ]
    hashes = []
    async with runtime.db.session() as session:
        from sqlalchemy import select

        from tradepilot.identity.models import RefreshToken, User

        hashes += list(await session.scalars(select(User.password_hash)))
        hashes += list(await session.scalars(select(RefreshToken.token_hash)))
    for body in bodies:
        assert "argon2" not in body and "password" not in body.lower()
        for h in hashes:
            assert h not in body
