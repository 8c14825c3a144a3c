"""The login guard: progressive per-account lockout on the test clock, identical answers for
unknown emails, per-IP failure throttling, and the new-address alert (real SMTP)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, update

from tests import support
from tests.helpers import PASSWORD, bearer, login, register, unique_email
from tests.mail import SmtpServer, text_of
from tradepilot.app import create_app
from tradepilot.core.clock import TestClock
from tradepilot.identity.guard import lock_seconds
from tradepilot.identity.guard_models import KnownLoginAddress
from tradepilot.identity.models import SecurityEvent, User
from tradepilot.identity.security_events import SecurityEventKind

WRONG = "definitely not the password"
HOME, CAFE, ATTACKER = "198.51.100.10", "198.51.100.20", "203.0.113.66"


class Guarded:
    """An app on a test clock, with clients at several addresses."""

    def __init__(self, app, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
        self.app, self.clock = app, clock
        self.runtime = app.state.runtime
        self._clients: dict[str, httpx.AsyncClient] = {}

    def at(self, ip: str) -> httpx.AsyncClient:
        if ip not in self._clients:
            transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
            self._clients[ip] = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return self._clients[ip]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.aclose()


@pytest.fixture
async def guarded(database_url: str, tmp_path) -> AsyncIterator[Guarded]:  # type: ignore[no-untyped-def]
    clock = TestClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_auth_per_minute=1000)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        g = Guarded(app, clock)
        yield g
        await g.close()


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def test_lock_schedule_is_progressive_and_capped() -> None:
    schedule = [lock_seconds(n, threshold=5, base=60, cap=900) for n in range(1, 12)]
    assert schedule == [0, 0, 0, 0, 60, 120, 240, 480, 900, 900, 900]
    assert lock_seconds(10_000, threshold=5, base=60, cap=900) == 900


async def test_lockout_refuses_even_the_right_password_until_it_expires(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    profile = await register(client)
    email = profile["email"]
    for _ in range(4):
        assert (await attempt(client, email, WRONG)).status_code == 401
    fifth = await attempt(client, email, WRONG)
    assert fifth.status_code == 401 and fifth.json()["code"] == "invalid_credentials"
    locked = await attempt(client, email, PASSWORD)  # right password, still refused
    assert locked.status_code == 429, locked.text
    assert locked.json()["code"] == "account_locked"
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert locked.headers["retry-after"] == "60"
    guarded.clock.advance(59)
    assert (await attempt(client, email, PASSWORD)).headers["retry-after"] == "1"
    guarded.clock.advance(1)
    await login(client, email)  # expired: the right password works again
    async with guarded.runtime.db.session() as session:
        kinds = list(await session.scalars(select(SecurityEvent.kind).where(SecurityEvent.user_id == uuid.UUID(profile["id"]))))
    assert kinds.count(SecurityEventKind.LOGIN_FAILED) == 5
    assert kinds.count(SecurityEventKind.ACCOUNT_LOCKED) == 1


async def test_lockout_doubles_per_further_failure_and_is_capped(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    email = (await register(client))["email"]
    for _ in range(5):
        await attempt(client, email, WRONG)
    waits = []
    for _ in range(6):
        refused = await attempt(client, email, WRONG)
        assert refused.status_code == 429 and refused.json()["code"] == "account_locked"
        waits.append(int(refused.headers["retry-after"]))
        guarded.clock.advance(waits[-1])
        assert (await attempt(client, email, WRONG)).status_code == 401  # counted once the lock is over
    assert waits == [60, 120, 240, 480, 900, 900]
    guarded.clock.advance(900)
    await login(client, email)  # a success resets the count
    assert (await attempt(client, email, WRONG)).status_code == 401
    assert (await attempt(client, email, PASSWORD)).status_code == 200


async def test_failures_are_forgotten_after_a_quiet_hour(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    email = (await register(client))["email"]
    for _ in range(4):
        await attempt(client, email, WRONG)
    guarded.clock.advance(3601)
    for _ in range(4):
        assert (await attempt(client, email, WRONG)).status_code == 401
    await login(client, email)


async def test_unknown_email_is_answered_exactly_like_a_known_one(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    known = (await register(client))["email"]
    unknown = unique_email("nobody")
    for _ in range(5):
        a, b = await attempt(client, known, WRONG), await attempt(client, unknown, WRONG)
        assert a.status_code == b.status_code == 401
        assert {k: v for k, v in a.json().items() if k != "request_id"} == \
               {k: v for k, v in b.json().items() if k != "request_id"}
    a, b = await attempt(client, known, PASSWORD), await attempt(client, unknown, PASSWORD)
    assert a.status_code == b.status_code == 429
    assert a.headers["retry-after"] == b.headers["retry-after"] == "60"
    assert {k: v for k, v in a.json().items() if k != "request_id"} == \
           {k: v for k, v in b.json().items() if k != "request_id"}


async def test_strangers_cannot_lock_the_owner_out_at_a_known_address(guarded: Guarded) -> None:
    home, attacker = guarded.at(HOME), guarded.at(ATTACKER)
    profile = await register(home)
    await login(home, profile["email"])  # HOME becomes a known address
    for _ in range(5):
        await attempt(attacker, profile["email"], WRONG)
    assert (await attempt(attacker, profile["email"], PASSWORD)).status_code == 429
    await login(home, profile["email"])  # the owner still gets in from home
    assert (await attempt(attacker, profile["email"], PASSWORD)).status_code == 429  # the stranger does not


async def test_a_password_reset_lifts_the_lock(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    profile = await register(client)
    for _ in range(5):
        await attempt(client, profile["email"], WRONG)
    assert (await attempt(client, profile["email"], PASSWORD)).status_code == 429
    guarded.clock.advance(5)
    async with guarded.runtime.db.session() as session:  # what confirm_password_reset sets
        await session.execute(update(User).where(User.email == profile["email"])
                              .values(password_changed_at=guarded.clock.now()))
        await session.commit()
    await login(client, profile["email"])


async def test_a_burst_of_failures_across_accounts_throttles_the_ip(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", rate_limit_auth_per_minute=1000,
                                     login_ip_failure_limits="6/minute")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        g = Guarded(app, TestClock())
        try:
            bot, neighbour = g.at(ATTACKER), g.at(CAFE)
            victim = (await register(neighbour))["email"]
            for _ in range(6):  # one guess each at many accounts: no account reaches its lockout
                assert (await attempt(bot, unique_email("spray"), WRONG)).status_code == 401
            throttled = await attempt(bot, victim, PASSWORD)
            assert throttled.status_code == 429, throttled.text
            assert throttled.json()["code"] == "too_many_login_attempts"
            assert 1 <= int(throttled.headers["retry-after"]) <= 60
            await login(neighbour, victim)  # another address is not affected
        finally:
            await g.close()


@pytest.fixture
async def mailing(database_url: str, tmp_path) -> AsyncIterator[tuple[Guarded, SmtpServer]]:  # type: ignore[no-untyped-def]
    with SmtpServer() as smtp:
        settings = support.make_settings(database_url, data_dir=tmp_path / "var", smtp_host="127.0.0.1",
                                         smtp_port=smtp.port, smtp_starttls=False)
        clock = TestClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            g = Guarded(app, clock)
            yield g, smtp
            await g.close()


async def test_login_from_a_new_address_records_an_event_and_mails_the_user(mailing) -> None:  # type: ignore[no-untyped-def]
    guarded, smtp = mailing
    home, cafe = guarded.at(HOME), guarded.at(CAFE)
    profile = await register(home)
    email = profile["email"]
    tokens = await login(home, email)  # the account's first login: no alert
    await login(home, email)  # a known address: no alert
    resp = await cafe.post("/api/auth/login", json={"email": email, "password": PASSWORD},
                           headers={"User-Agent": "CafeBrowser/1.0"})
    assert resp.status_code == 200
    alert = await smtp.inbox.wait_for(email, "new sign-in")
    body = text_of(alert)
    assert CAFE in body and "CafeBrowser/1.0" in body and HOME not in body
    await login(cafe, email)  # CAFE is known now
    events = await home.get("/api/auth/security-events", params={"kind": SecurityEventKind.LOGIN_NEW_IP},
                            headers=bearer(tokens))
    assert events.status_code == 200, events.text
    items = events.json()["items"]
    assert [(e["ip"], e["user_agent"]) for e in items] == [(CAFE, "CafeBrowser/1.0")]
    await guarded.runtime.services["jobs"].drain()
    alerts = [m for m in smtp.inbox.to(email) if "new sign-in" in str(m["Subject"]).lower()]
    assert len(alerts) == 1
    async with guarded.runtime.db.session() as session:
        addresses = set(await session.scalars(select(KnownLoginAddress.address)
                                              .where(KnownLoginAddress.user_id == uuid.UUID(profile["id"]))))
    assert addresses == {HOME, CAFE}


async def test_parallel_guesses_cannot_slip_past_the_lock(guarded: Guarded) -> None:
    client = guarded.at(ATTACKER)
    email = (await register(client))["email"]
    answers = await asyncio.gather(*(attempt(client, email, WRONG) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 7
    # and a success racing failures never breaks the counter
    guarded.clock.advance(60)
    mixed = await asyncio.gather(*(attempt(client, email, PASSWORD if n % 2 else WRONG) for n in range(6)))
    assert {a.status_code for a in mixed} <= {200, 401, 429} and 500 not in {a.status_code for a in mixed}
