"""Two-factor authentication over HTTP, on SQLite and PostgreSQL, on a test clock.

Each test keeps its failed attempts per account few, so that the login guard's lockout
never decides the outcome of a 2FA assertion.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from tests.helpers import PASSWORD, bearer, login, new_user
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.errors import Unauthorized
from tradepilot.core.secrets_box import SecretBox
from tradepilot.identity import recovery
from tradepilot.identity.deps import AdminUser
from tradepilot.identity.models import SecurityEvent, User
from tradepilot.identity.twofactor import make_totp

RECOVERY_CODE = re.compile(r"[23456789abcdefghjkmnpqrstuvwxyz]{4}-[23456789abcdefghjkmnpqrstuvwxyz]{4}-"
                           r"[23456789abcdefghjkmnpqrstuvwxyz]{2}")


@pytest.fixture
async def tf(settings: Settings, clock: TestClock) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """A client of an app whose time is the test clock."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


def code_at(secret: str, clock: TestClock, steps: int = 0) -> str:
    return make_totp(secret).at(clock.now(), counter_offset=steps)


def wrong_code(secret: str, clock: TestClock) -> str:
    """A six-digit code valid at no step of the window."""
    taken = {code_at(secret, clock, s) for s in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(100000, 999999, 7919)) if c not in taken)


async def enrol(client: httpx.AsyncClient, tokens: dict, clock: TestClock) -> tuple[str, list[str]]:
    """Enable and confirm 2FA; moves the clock past the confirming step."""
    begun = await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens))
    assert begun.status_code == 200, begun.text
    secret = begun.json()["secret"]
    confirmed = await client.post("/api/auth/2fa/confirm", json={"code": code_at(secret, clock)},
                                  headers=bearer(tokens))
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(30)
    return secret, confirmed.json()["recovery_codes"]


async def try_login(client: httpx.AsyncClient, email: str, otp: str | None = None,
                    password: str = PASSWORD) -> httpx.Response:
    body = {"email": email, "password": password}
    if otp is not None:
        body["otp"] = otp
    return await client.post("/api/auth/login", json=body)


def problem_code(resp: httpx.Response) -> str:
    return str(resp.json().get("code"))


async def event_kinds(app: FastAPI, email: str) -> list[str]:
    runtime = app.state.runtime
    async with runtime.db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
        rows = await session.scalars(select(SecurityEvent.kind).where(SecurityEvent.user_id == user_id))
        return list(rows)


async def test_enable_confirm_then_login_needs_a_code(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, app = tf
    profile, tokens = await new_user(client)
    email = profile["email"]
    begun = await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens))
    assert begun.status_code == 200 and begun.headers["cache-control"] == "no-store"
    body = begun.json()
    assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"]) and body["issuer"] == "TradePilot"
    uri = body["otpauth_uri"]
    assert uri.startswith("otpauth://totp/TradePilot:") and email.replace("@", "%40") in uri
    assert f"secret={body['secret']}" in uri and "issuer=TradePilot" in uri
    # pending: logins do not change until confirmed, and a second /enable replaces the secret
    status = (await client.get("/api/auth/2fa/status", headers=bearer(tokens))).json()
    assert status == {"enabled": False, "pending": True, "enabled_at": None, "recovery_codes_left": 0}
    assert (await try_login(client, email)).status_code == 200
    again = await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens))
    secret = again.json()["secret"]
    assert secret != body["secret"]
    stale = await client.post("/api/auth/2fa/confirm", json={"code": code_at(body["secret"], clock)},
                              headers=bearer(tokens))
    assert stale.status_code == 422 and problem_code(stale) == "invalid_otp"

    confirmed = await client.post("/api/auth/2fa/confirm", json={"code": code_at(secret, clock)},
                                  headers=bearer(tokens))
    assert confirmed.status_code == 200 and confirmed.headers["cache-control"] == "no-store"
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10 and all(RECOVERY_CODE.fullmatch(c) for c in codes)
    status = (await client.get("/api/auth/2fa/status", headers=bearer(tokens))).json()
    assert status["enabled"] is True and status["pending"] is False and status["recovery_codes_left"] == 10
    refused = await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens))
    assert refused.status_code == 409 and problem_code(refused) == "two_factor_already_enabled"

    clock.advance(30)
    missing = await try_login(client, email)
    assert missing.status_code == 401 and problem_code(missing) == "two_factor_required"
    empty = await try_login(client, email, otp="  ")
    assert empty.status_code == 401 and problem_code(empty) == "two_factor_required"
    wrong = await try_login(client, email, otp=wrong_code(secret, clock))
    assert wrong.status_code == 401 and problem_code(wrong) == "invalid_otp"
    # a wrong password still answers as before, whatever the code
    bad_password = await try_login(client, email, otp=code_at(secret, clock), password="not the password")
    assert bad_password.status_code == 401 and problem_code(bad_password) == "invalid_credentials"
    ok = await try_login(client, email, otp=code_at(secret, clock))
    assert ok.status_code == 200 and set(ok.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    kinds = await event_kinds(app, email)
    assert "2fa.enabled" in kinds and "2fa.failed" in kinds and kinds.count("login.failed") == 2


async def test_one_step_either_side_is_accepted_two_are_not(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    clock.advance(300)
    for steps in (-2, 2):
        refused = await try_login(client, profile["email"], otp=code_at(secret, clock, steps))
        assert refused.status_code == 401 and problem_code(refused) == "invalid_otp", steps
    # the counter only moves forward, so try the window from the oldest step up
    for steps in (-1, 0, 1):
        accepted = await try_login(client, profile["email"], otp=code_at(secret, clock, steps))
        assert accepted.status_code == 200, (steps, accepted.text)


async def test_a_code_is_accepted_once(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    code = code_at(secret, clock)
    assert (await try_login(client, profile["email"], otp=code)).status_code == 200
    replay = await try_login(client, profile["email"], otp=code)
    assert replay.status_code == 401 and problem_code(replay) == "invalid_otp"
    # an older step after a newer one was accepted is a replay too
    newer = await try_login(client, profile["email"], otp=code_at(secret, clock, 1))
    assert newer.status_code == 200
    clock.advance(30)
    older = await try_login(client, profile["email"], otp=code_at(secret, clock, -1))
    assert older.status_code == 401 and problem_code(older) == "invalid_otp"


async def test_concurrent_logins_with_one_code_succeed_once(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    for _round in range(3):
        clock.advance(30)
        code = code_at(secret, clock)
        answers = await asyncio.gather(*(try_login(client, profile["email"], otp=code) for _ in range(2)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 401], [a.text for a in answers]
        assert problem_code(next(a for a in answers if a.status_code == 401)) == "invalid_otp"


async def test_concurrent_require_spends_a_code_once(tf, clock) -> None:  # type: ignore[no-untyped-def]
    """The service alone (no login guard in the way): of three transactions presenting one
    TOTP code, and then one recovery code, exactly one commits a success."""
    client, app = tf
    profile, tokens = await new_user(client)
    secret, codes = await enrol(client, tokens, clock)
    runtime = app.state.runtime
    second_factor = runtime.services["second_factor"]

    async def attempt(otp: str) -> str:
        async with runtime.db.session() as session:
            user = await session.scalar(select(User).where(User.email == profile["email"]))
            try:
                await second_factor.require(session, user=user, otp=otp, ip=None)
            except Unauthorized as exc:
                await session.commit()
                return exc.code
            await session.commit()
            return "ok"

    for otp in (code_at(secret, clock), codes[0]):
        results = await asyncio.gather(*(attempt(otp) for _ in range(3)))
        assert sorted(results) == ["invalid_otp", "invalid_otp", "ok"], otp


async def test_recovery_code_works_once(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, app = tf
    profile, tokens = await new_user(client)
    _, codes = await enrol(client, tokens, clock)
    typed = codes[0].replace("-", "").upper()  # compared without dashes, case-insensitively
    first = await try_login(client, profile["email"], otp=typed)
    assert first.status_code == 200
    status = (await client.get("/api/auth/2fa/status", headers=bearer(first.json()))).json()
    assert status["recovery_codes_left"] == 9
    again = await try_login(client, profile["email"], otp=codes[0])
    assert again.status_code == 401 and problem_code(again) == "invalid_otp"
    assert (await try_login(client, profile["email"], otp=f"  {codes[1]} ")).status_code == 200
    assert (await event_kinds(app, profile["email"])).count("2fa.recovery_code_used") == 2


async def test_concurrent_logins_with_one_recovery_code_succeed_once(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    _, codes = await enrol(client, tokens, clock)
    answers = await asyncio.gather(*(try_login(client, profile["email"], otp=codes[3]) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 401]


async def test_wrong_codes_count_toward_lockout(tf, clock, settings) -> None:  # type: ignore[no-untyped-def]
    """At login and on /disable alike, wrong second-factor codes lock the account like wrong passwords."""
    client, _ = tf
    threshold = settings.login_lockout_threshold
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    for _ in range(threshold):
        assert problem_code(await try_login(client, profile["email"], otp=wrong_code(secret, clock))) == "invalid_otp"
    locked = await try_login(client, profile["email"], otp=code_at(secret, clock))
    assert locked.status_code == 429 and problem_code(locked) == "account_locked"
    clock.advance(settings.login_lockout_base_seconds + 1)
    assert (await try_login(client, profile["email"], otp=code_at(secret, clock))).status_code == 200

    other, other_tokens = await new_user(client)
    other_secret, _ = await enrol(client, other_tokens, clock)
    for _ in range(threshold):
        refused = await client.post("/api/auth/2fa/disable", headers=bearer(other_tokens),
                                    json={"password": PASSWORD, "code": wrong_code(other_secret, clock)})
        assert refused.status_code == 403 and problem_code(refused) == "invalid_otp"
    locked = await try_login(client, other["email"], otp=code_at(other_secret, clock))
    assert locked.status_code == 429 and problem_code(locked) == "account_locked"
    still = await client.post("/api/auth/2fa/disable", headers=bearer(other_tokens),
                              json={"password": PASSWORD, "code": code_at(other_secret, clock)})
    assert still.status_code == 429 and problem_code(still) == "account_locked"


async def test_disable_needs_password_and_code(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, app = tf
    profile, tokens = await new_user(client)
    secret, codes = await enrol(client, tokens, clock)
    bad_password = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                                     json={"password": "not the password", "code": code_at(secret, clock)})
    assert bad_password.status_code == 403 and problem_code(bad_password) == "invalid_password"
    bad_code = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                                 json={"password": PASSWORD, "code": wrong_code(secret, clock)})
    assert bad_code.status_code == 403 and problem_code(bad_code) == "invalid_otp"
    no_code = await client.post("/api/auth/2fa/disable", headers=bearer(tokens), json={"password": PASSWORD})
    assert no_code.status_code == 422
    assert (await client.get("/api/auth/2fa/status", headers=bearer(tokens))).json()["enabled"] is True
    done = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                             json={"password": PASSWORD, "code": code_at(secret, clock)})
    assert done.status_code == 204
    status = (await client.get("/api/auth/2fa/status", headers=bearer(tokens))).json()
    assert status == {"enabled": False, "pending": False, "enabled_at": None, "recovery_codes_left": 0}
    assert (await try_login(client, profile["email"])).status_code == 200
    off = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                            json={"password": PASSWORD, "code": codes[0]})
    assert off.status_code == 409 and problem_code(off) == "two_factor_not_enabled"
    async with app.state.runtime.db.session() as session:
        user = await session.scalar(select(User).where(User.email == profile["email"]))
        assert user.totp_secret_encrypted is None and user.totp_enabled_at is None
    assert "2fa.disabled" in await event_kinds(app, profile["email"])


async def test_disable_with_a_recovery_code_and_not_with_an_api_key(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    _, codes = await enrol(client, tokens, clock)
    created = await client.post("/api/users/me/api-keys", headers=bearer(tokens),
                                json={"name": "bot", "scopes": ["read", "trade"]})
    assert created.status_code == 201, created.text
    with_key = await client.post("/api/auth/2fa/disable", headers={"X-API-Key": created.json()["key"]},
                                 json={"password": PASSWORD, "code": codes[0]})
    assert with_key.status_code == 403 and problem_code(with_key) == "session_required"
    done = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                             json={"password": PASSWORD, "code": codes[0]})
    assert done.status_code == 204
    assert (await try_login(client, profile["email"])).status_code == 200


async def test_new_recovery_codes_replace_the_old_ones(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, _ = tf
    profile, tokens = await new_user(client)
    secret, old = await enrol(client, tokens, clock)
    fresh = await client.post("/api/auth/2fa/recovery-codes", headers=bearer(tokens),
                              json={"password": PASSWORD, "code": code_at(secret, clock)})
    assert fresh.status_code == 200 and fresh.headers["cache-control"] == "no-store"
    new = fresh.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    stale = await try_login(client, profile["email"], otp=old[0])
    assert stale.status_code == 401 and problem_code(stale) == "invalid_otp"
    assert (await try_login(client, profile["email"], otp=new[0])).status_code == 200


async def test_password_reset_does_not_bypass_two_factor(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, app = tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    runtime = app.state.runtime
    identity = runtime.services["identity"]
    async with runtime.db.session() as session:
        user = await session.scalar(select(User).where(User.email == profile["email"]))
        token = await recovery.issue_token(identity, session, user_id=user.id, purpose=recovery.RESET,
                                           ttl=recovery.RESET_TTL)
        await session.commit()
    new_password = "a completely new passphrase"
    missing = await client.post("/api/auth/reset-password/confirm", json={"token": token, "new_password": new_password})
    assert missing.status_code == 401 and problem_code(missing) == "two_factor_required"
    wrong = await client.post("/api/auth/reset-password/confirm",
                              json={"token": token, "new_password": new_password, "otp": wrong_code(secret, clock)})
    assert wrong.status_code == 401 and problem_code(wrong) == "invalid_otp"
    assert (await try_login(client, profile["email"], otp=code_at(secret, clock))).status_code == 200
    clock.advance(30)
    done = await client.post("/api/auth/reset-password/confirm",
                             json={"token": token, "new_password": new_password, "otp": code_at(secret, clock)})
    assert done.status_code == 204, done.text
    # still 2FA after the reset
    clock.advance(30)
    missing = await try_login(client, profile["email"], password=new_password)
    assert missing.status_code == 401 and problem_code(missing) == "two_factor_required"
    assert (await try_login(client, profile["email"], otp=code_at(secret, clock), password=new_password)
            ).status_code == 200


async def test_admin_endpoints_need_two_factor(tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, app = tf

    @app.get("/api/test-only/admin")
    async def admin_only(admin: AdminUser) -> dict[str, str]:
        return {"admin": admin.email}

    runtime = app.state.runtime
    async with runtime.db.session() as session:
        admin = await runtime.services["identity"].register(session, email="root@example.com", password=PASSWORD,
                                                            role="admin")
    tokens = await login(client, admin.email)
    refused = await client.get("/api/test-only/admin", headers=bearer(tokens))
    assert refused.status_code == 403 and problem_code(refused) == "two_factor_required_for_admin"
    await enrol(client, tokens, clock)
    # the same session's cached principal was refreshed when 2FA was turned on
    allowed = await client.get("/api/test-only/admin", headers=bearer(tokens))
    assert allowed.status_code == 200 and allowed.json() == {"admin": admin.email}
    _, user_tokens = await new_user(client)
    await enrol(client, user_tokens, clock)
    not_admin = await client.get("/api/test-only/admin", headers=bearer(user_tokens))
    assert not_admin.status_code == 403 and problem_code(not_admin) == "admin_required"


async def test_the_secret_is_encrypted_at_rest_and_shown_only_once(tf, clock, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    client, app = tf
    caplog.set_level(logging.DEBUG)
    profile, tokens = await new_user(client)
    begun = await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens))
    secret = begun.json()["secret"]
    answers = [await client.post("/api/auth/2fa/confirm", json={"code": code_at(secret, clock)},
                                 headers=bearer(tokens))]
    clock.advance(30)
    answers.append(await try_login(client, profile["email"]))
    answers.append(await try_login(client, profile["email"], otp=wrong_code(secret, clock)))
    answers.append(await try_login(client, profile["email"], otp=code_at(secret, clock)))
    answers.append(await client.get("/api/auth/2fa/status", headers=bearer(tokens)))
    answers.append(await client.get("/api/users/me", headers=bearer(tokens)))
    answers.append(await client.post("/api/auth/2fa/enable", json={"password": PASSWORD}, headers=bearer(tokens)))
    for answer in answers:
        assert answer.status_code < 500 and secret not in answer.text and secret not in str(answer.headers)
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in repr(vars(record))

    async with app.state.runtime.db.session() as session:
        raw = await session.scalar(text("SELECT totp_secret_encrypted FROM user_account WHERE email = :e"),
                                   {"e": profile["email"]})
        dumped = [str(row) for row in (await session.execute(text("SELECT * FROM job"))).all()]
        dumped += [str(row) for row in (await session.execute(text("SELECT * FROM security_event"))).all()]
    assert raw and secret not in raw and raw != secret
    assert SecretBox.from_settings(settings).decrypt(raw) == secret
    assert dumped and not any(secret in row for row in dumped)
