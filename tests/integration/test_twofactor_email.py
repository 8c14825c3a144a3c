"""Emailed one-time login codes, through a real SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import select

from tests import support
from tests.helpers import PASSWORD, bearer, new_user
from tests.integration.test_twofactor import code_at, enrol, problem_code, try_login
from tests.mail import Inbox, SmtpServer, text_of
from tradepilot.app import create_app
from tradepilot.core.clock import TestClock
from tradepilot.core.errors import Unauthorized
from tradepilot.email.service import EmailRenderer
from tradepilot.identity.models import User


@pytest.fixture
async def mail_tf(database_url: str, tmp_path, clock: TestClock) -> AsyncIterator[tuple]:  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        settings = support.make_settings(database_url, data_dir=tmp_path / "var", smtp_host="127.0.0.1",
                                         smtp_port=smtp.port, smtp_starttls=False)
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield client, smtp.inbox, app


async def request_code(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/2fa/email-code", json={"email": email, "password": password})


async def mails_about(inbox: Inbox, email: str, subject_part: str, count: int = 1) -> list[EmailMessage]:
    """Wait until ``count`` mails to ``email`` about ``subject_part`` arrived; all of them, oldest first."""
    for _ in range(750):
        mails = [m for m in inbox.to(email) if subject_part in str(m["Subject"]).lower()]
        if len(mails) >= count:
            return mails
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} mails to {email} about {subject_part!r}")


async def received_code(inbox: Inbox, email: str, nth: int = 1) -> str:
    """The code in the ``nth`` sign-in-code mail to ``email``."""
    mail = (await mails_about(inbox, email, "sign-in code", nth))[nth - 1]
    match = re.search(r"^\s+(\d{6})\s*$", text_of(mail), re.MULTILINE)
    assert match, text_of(mail)
    return match.group(1)


async def test_emailed_code_logs_in_once(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_tf
    profile, tokens = await new_user(client)
    await enrol(client, tokens, clock)
    sent = await request_code(client, profile["email"])
    assert sent.status_code == 202 and sent.json()["status"] == "sent"
    code = await received_code(inbox, profile["email"])
    assert code not in sent.text
    mail = next(m for m in inbox.to(profile["email"]) if "sign-in code" in str(m["Subject"]).lower())
    assert code not in str(mail["Subject"]) and mail.get_body(preferencelist=("html",)) is not None
    assert (await try_login(client, profile["email"], otp=code)).status_code == 200
    replay = await try_login(client, profile["email"], otp=code)
    assert replay.status_code == 401 and problem_code(replay) == "invalid_otp"


async def test_code_needs_the_password_and_two_factor(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_tf
    profile, tokens = await new_user(client)
    not_on = await request_code(client, profile["email"])
    assert not_on.status_code == 409 and problem_code(not_on) == "two_factor_not_enabled"
    await enrol(client, tokens, clock)
    wrong = await request_code(client, profile["email"], password="not the password")
    unknown = await request_code(client, "nobody-at-all@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert problem_code(wrong) == problem_code(unknown) == "invalid_credentials"
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert not [m for m in inbox.to(profile["email"]) if "sign-in code" in str(m["Subject"]).lower()]


async def test_at_most_three_codes_per_ten_minutes(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_tf
    profile, tokens = await new_user(client)
    await enrol(client, tokens, clock)
    codes = []
    for n in range(1, 4):
        assert (await request_code(client, profile["email"])).status_code == 202
        codes.append(await received_code(inbox, profile["email"], n))
        clock.advance(60)
    limited = await request_code(client, profile["email"])
    assert limited.status_code == 429 and problem_code(limited) == "email_code_rate_limited"
    assert int(limited.headers["retry-after"]) == 600 - 3 * 60
    # only the newest code works: the earlier ones were replaced
    if codes[0] != codes[2]:
        stale = await try_login(client, profile["email"], otp=codes[0])
        assert stale.status_code == 401 and problem_code(stale) == "invalid_otp"
    clock.advance(int(limited.headers["retry-after"]))
    assert (await request_code(client, profile["email"])).status_code == 202
    fourth = await received_code(inbox, profile["email"], 4)
    assert (await try_login(client, profile["email"], otp=fourth)).status_code == 200


async def test_codes_expire_and_allow_five_attempts(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    """Checked on the service (not through /login) so the login guard's lockout stays out of it."""
    client, inbox, app = mail_tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    runtime = app.state.runtime
    second_factor = runtime.services["second_factor"]

    async def attempt(otp: str) -> str:
        async with runtime.db.session() as session:
            user = await session.scalar(select(User).where(User.email == profile["email"]))
            try:
                await second_factor.require(session, user=user, otp=otp, ip=None)
            except Unauthorized as exc:
                await session.commit()  # as the login does: failures are kept
                return exc.code
            await session.commit()
            return "ok"

    assert (await request_code(client, profile["email"])).status_code == 202
    code = await received_code(inbox, profile["email"], 1)
    taken = {code} | {code_at(secret, clock, s) for s in (-1, 0, 1)}
    wrong = [c for c in (f"{n:06d}" for n in range(123456, 999999, 104729)) if c not in taken][:5]
    for guess in wrong:
        assert await attempt(guess) == "invalid_otp"
    assert await attempt(code) == "invalid_otp"  # five wrong tries used the code up

    clock.advance(600)  # a fresh window for the rate limit
    assert (await request_code(client, profile["email"])).status_code == 202
    code = await received_code(inbox, profile["email"], 2)
    clock.advance(10 * 60 + 1)
    assert await attempt(code) == "invalid_otp"  # expired

    assert (await request_code(client, profile["email"])).status_code == 202
    code = await received_code(inbox, profile["email"], 3)
    clock.advance(9 * 60)
    for guess in wrong[:4]:
        assert await attempt(guess) == "invalid_otp"
    assert await attempt(code) == "ok"  # fifth try, within ten minutes


async def test_emailed_codes_do_not_turn_two_factor_off(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_tf
    profile, tokens = await new_user(client)
    await enrol(client, tokens, clock)
    assert (await request_code(client, profile["email"])).status_code == 202
    code = await received_code(inbox, profile["email"])
    refused = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                                json={"password": PASSWORD, "code": code})
    assert refused.status_code == 403 and problem_code(refused) == "invalid_otp"
    assert (await client.get("/api/auth/2fa/status", headers=bearer(tokens))).json()["enabled"] is True


async def test_turning_two_factor_on_and_off_is_mailed(mail_tf, clock) -> None:  # type: ignore[no-untyped-def]
    client, inbox, _ = mail_tf
    profile, tokens = await new_user(client)
    secret, _ = await enrol(client, tokens, clock)
    await inbox.wait_for(profile["email"], "security alert")
    done = await client.post("/api/auth/2fa/disable", headers=bearer(tokens),
                             json={"password": PASSWORD, "code": code_at(secret, clock)})
    assert done.status_code == 204
    bodies = [text_of(m) for m in await mails_about(inbox, profile["email"], "security alert", 2)]
    assert any("turned on" in b for b in bodies) and any("turned off" in b for b in bodies)
    assert not any(secret in b for b in bodies)


def test_the_code_template_renders_in_text_and_html() -> None:
    rendered = EmailRenderer(globals_={"public_url": "https://tp.example"}).render(
        "two_factor_code", {"name": None, "code": "042137", "ip": "203.0.113.7", "expires_minutes": 10})
    assert "042137" not in rendered.subject and "sign-in code" in rendered.subject
    for body in (rendered.text, rendered.html):
        assert "042137" in body and "203.0.113.7" in body and "10 minutes" in body and "None" not in body
    assert rendered.text.startswith("TradePilot\n") and rendered.html.startswith("<!DOCTYPE html>")
