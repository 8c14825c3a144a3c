"""Password change, password reset by email (via a real SMTP server), email verification."""

from __future__ import annotations

import pytest

from tests import support
from tests.helpers import PASSWORD, bearer, login, new_user, register, unique_email
from tests.mail import SmtpServer, link_token, text_of
from tradepilot.app import create_app

import httpx

PUBLIC = "https://trade.example.com"


@pytest.fixture
async def mail_client(database_url, tmp_path):  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        settings = support.make_settings(database_url, data_dir=tmp_path / "var", smtp_host="127.0.0.1",
                                         smtp_port=smtp.port, smtp_starttls=False, public_url=PUBLIC)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield client, smtp.inbox, app.state.runtime


async def test_registration_mails_a_verification_link(mail_client) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_client
    profile = await register(client)
    msg = await inbox.wait_for(profile["email"], "confirm")
    url, token = link_token(msg)
    assert url.startswith(PUBLIC + "/verify-email?token=")
    assert msg.get_body(preferencelist=("html",)) is not None
    verified = await client.post("/api/auth/verify-email", json={"token": token})
    assert verified.status_code == 200 and verified.json()["email_verified"] is True
    again = await client.post("/api/auth/verify-email", json={"token": token})
    assert again.status_code == 422 and again.json()["code"] == "invalid_token"
    await inbox.wait_for(profile["email"], "welcome")


async def test_change_password_ends_other_sessions(mail_client) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_client
    profile, laptop = await new_user(client)
    phone = await login(client, profile["email"])
    wrong = await client.post("/api/auth/change-password", headers=bearer(laptop),
                              json={"current_password": "not it at all", "new_password": "a brand new passphrase"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_password"
    weak = await client.post("/api/auth/change-password", headers=bearer(laptop),
                             json={"current_password": PASSWORD, "new_password": "password1"})
    assert weak.status_code == 422 and weak.json()["code"] == "common_password"
    ok = await client.post("/api/auth/change-password", headers=bearer(laptop),
                           json={"current_password": PASSWORD, "new_password": "a brand new passphrase"})
    assert ok.status_code == 204
    assert (await client.get("/api/users/me", headers=bearer(laptop))).status_code == 200
    assert (await client.get("/api/users/me", headers=bearer(phone))).status_code == 401
    assert (await client.post("/api/auth/login", json={"email": profile["email"], "password": PASSWORD})).status_code == 401
    await login(client, profile["email"], "a brand new passphrase")
    await inbox.wait_for(profile["email"], "security")


async def test_reset_flow_single_use_and_ends_all_sessions(mail_client) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_client
    profile, tokens = await new_user(client)
    # a forged Host header must not change the link (reset poisoning)
    resp = await client.post("/api/auth/reset-password", json={"email": profile["email"]},
                             headers={"Host": "evil.example.net", "X-Forwarded-Host": "evil.example.net"})
    assert resp.status_code == 202
    msg = await inbox.wait_for(profile["email"], "reset")
    url, token = link_token(msg)
    assert url.startswith(PUBLIC + "/reset-password?token=") and "evil" not in text_of(msg)
    weak = await client.post("/api/auth/reset-password/confirm", json={"token": token, "new_password": "short"})
    assert weak.status_code == 422  # and the token is not spent by a refused attempt
    done = await client.post("/api/auth/reset-password/confirm",
                             json={"token": token, "new_password": "reset to something long"})
    assert done.status_code == 204
    assert (await client.get("/api/users/me", headers=bearer(tokens))).status_code == 401
    reuse = await client.post("/api/auth/reset-password/confirm",
                              json={"token": token, "new_password": "and again something else"})
    assert reuse.status_code == 422 and reuse.json()["code"] == "invalid_token"
    await login(client, profile["email"], "reset to something long")


async def test_reset_answer_is_identical_for_unknown_email(mail_client) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_client
    profile = await register(client)
    known = await client.post("/api/auth/reset-password", json={"email": profile["email"]})
    unknown = await client.post("/api/auth/reset-password", json={"email": unique_email("nobody")})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert known.headers["content-length"] == unknown.headers["content-length"]
    await inbox.wait_for(profile["email"], "reset")


async def test_reset_token_expires_after_30_minutes(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tradepilot.core.clock import TestClock
    from tradepilot.identity import recovery

    clock = TestClock()
    app = create_app(support.make_settings(database_url, data_dir=tmp_path / "var"), clock=clock)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        identity = runtime.services["identity"]
        async with runtime.db.session() as session:
            user = await identity.register(session, email=unique_email(), password=PASSWORD)
            token = await recovery.issue_token(identity, session, user_id=user.id, purpose=recovery.RESET,
                                               ttl=recovery.RESET_TTL)
            await session.commit()
        clock.advance(31 * 60)
        async with runtime.db.session() as session:
            with pytest.raises(Exception) as err:
                await recovery.confirm_password_reset(identity, session, token=token, new="a fine new passphrase",
                                                      otp=None, ip=None)
            assert getattr(err.value, "code", None) == "invalid_token"
