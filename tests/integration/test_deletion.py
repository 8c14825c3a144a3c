"""Account deletion: password (and 2FA), stop hooks, revocation, grace period, cancel, purge."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import PASSWORD, bearer, login, new_user, register
from tests.integration.admin_support import create_key, recording_stop_hook, sent_mails, set_account
from tests.mail import text_of
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.errors import Conflict
from tradepilot.identity import deletion
from tradepilot.identity.lifecycle import ACCOUNT_STOP_HOOKS, AccountStop, StopReason
from tradepilot.identity.models import ApiKey, SecurityEvent, User, UserSession
from tradepilot.identity.security_events import SecurityEventKind
from tradepilot.jobs.models import Job, Schedule
from tradepilot.jobs.scheduler import registered_schedules

DAY = 24 * 3600


@pytest.fixture
async def clocked(settings: Settings, clock: TestClock) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The app on a test clock: the grace period passes when the test says so."""
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        # the background scheduler would purge as soon as the clock moves; tests tick it by hand
        await application.state.runtime.services["jobs"].scheduler.stop()
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, application.state.runtime


async def _delete(client: httpx.AsyncClient, tokens: dict, **body: object) -> httpx.Response:
    return await client.request("DELETE", "/api/users/me", json={"password": PASSWORD, **body}, headers=bearer(tokens))


async def _user_exists(runtime, user_id: str) -> bool:  # type: ignore[no-untyped-def]
    async with runtime.db.session() as session:
        return await session.get(User, uuid.UUID(user_id)) is not None


async def test_deletion_needs_the_password(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    wrong = await _delete(client, tokens, password="not my password")
    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_password"
    assert (await client.request("DELETE", "/api/users/me", headers=bearer(tokens))).status_code == 422
    assert (await client.request("DELETE", "/api/users/me", json={"password": PASSWORD})).status_code == 401
    status = (await client.get("/api/users/me/deletion", headers=bearer(tokens))).json()
    assert status["pending"] is False and status["scheduled_for"] is None and status["grace_days"] == 14


async def test_deletion_needs_the_second_factor_when_on(client, runtime) -> None:  # type: ignore[no-untyped-def]
    user, tokens = await new_user(client)
    await set_account(runtime, user["id"], totp_enabled_at=runtime.clock.now())
    resp = await _delete(client, tokens)
    assert resp.status_code == 401 and resp.json()["code"] == "two_factor_required"
    bad = await _delete(client, tokens, otp="000000")
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_otp"
    assert (await client.get("/api/users/me/deletion", headers=bearer(tokens))).json()["pending"] is False


async def test_request_stops_revokes_and_schedules_then_cancel_keeps_the_account(clocked) -> None:  # type: ignore[no-untyped-def]
    client, runtime = clocked
    user, tokens = await new_user(client)
    other_device = await login(client, user["email"])
    key = await create_key(client, tokens, ["read", "trade"])
    for headers in (bearer(tokens), bearer(other_device), {"X-API-Key": key["key"]}):
        assert (await client.get("/api/users/me", headers=headers)).status_code == 200  # cached now
    with recording_stop_hook() as stops:
        resp = await _delete(client, tokens)
    assert resp.status_code == 202, resp.text
    now = runtime.clock.now()
    body = resp.json()
    assert body["pending"] is True and body["grace_days"] == deletion.DELETION_GRACE_DAYS
    assert body["scheduled_for"] == (now + timedelta(days=14)).isoformat().replace("+00:00", "Z")
    assert [(s.user_id, s.reason) for s in stops] == [(uuid.UUID(user["id"]), StopReason.DELETION_REQUESTED)]
    for headers in (bearer(tokens), bearer(other_device), {"X-API-Key": key["key"]}):
        assert (await client.get("/api/users/me", headers=headers)).status_code == 401  # at once
    assert (await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status_code == 401
    async with runtime.db.session() as session:
        kinds = list(await session.scalars(
            select(SecurityEvent.kind).where(SecurityEvent.user_id == uuid.UUID(user["id"]))))
    assert SecurityEventKind.ACCOUNT_DELETION_REQUESTED in kinds
    notice = [m for m in await sent_mails(runtime, user["email"]) if "scheduled for deletion" in str(m["Subject"])]
    assert len(notice) == 1 and "2026-01-15 00:00 UTC" in text_of(notice[0])

    runtime.clock.advance(3 * DAY)
    again = await login(client, user["email"])  # allowed during the grace period
    status = (await client.get("/api/users/me/deletion", headers=bearer(again))).json()
    assert status["pending"] is True and status["scheduled_for"] == body["scheduled_for"]
    twice = await _delete(client, again)
    assert twice.status_code == 409 and twice.json()["code"] == "deletion_already_requested"
    cancelled = await client.post("/api/users/me/deletion/cancel", headers=bearer(again))
    assert cancelled.status_code == 200 and cancelled.json()["pending"] is False
    no_more = await client.post("/api/users/me/deletion/cancel", headers=bearer(again))
    assert no_more.status_code == 409 and no_more.json()["code"] == "no_deletion_pending"

    runtime.clock.advance(30 * DAY)
    assert await deletion.purge_due_accounts(runtime) == []
    assert await _user_exists(runtime, user["id"])
    kept = await login(client, user["email"])  # (the earlier access token has long expired)
    assert (await client.get("/api/users/me", headers=bearer(kept))).status_code == 200


async def test_purge_after_the_grace_period(clocked) -> None:  # type: ignore[no-untyped-def]
    client, runtime = clocked
    user, tokens = await new_user(client)
    await create_key(client, tokens, ["read"])
    bystander, bystander_tokens = await new_user(client)
    assert (await _delete(client, tokens)).status_code == 202
    runtime.clock.advance(13 * DAY)
    assert await deletion.purge_due_accounts(runtime) == []
    runtime.clock.advance(1 * DAY + 1)
    back = await login(client, user["email"])  # logged in again, but did not cancel
    assert (await client.get("/api/users/me", headers=bearer(back))).status_code == 200  # cached now
    bystander_tokens = await login(client, bystander["email"])
    with recording_stop_hook() as stops:
        purged = await deletion.purge_due_accounts(runtime)
    assert purged == [uuid.UUID(user["id"])]
    assert [(s.user_id, s.reason) for s in stops] == [(uuid.UUID(user["id"]), StopReason.PURGE)]
    uid = uuid.UUID(user["id"])
    async with runtime.db.session() as session:
        assert await session.get(User, uid) is None
        for model in (UserSession, ApiKey, SecurityEvent):
            assert await session.scalar(select(func.count()).select_from(model).where(model.user_id == uid)) == 0
    assert [str(m["Subject"]) for m in await sent_mails(runtime, user["email"]) if "was deleted" in str(m["Subject"])]
    assert (await client.get("/api/users/me", headers=bearer(back))).status_code == 401
    gone = await client.post("/api/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert gone.status_code == 401 and gone.json()["code"] == "invalid_credentials"
    assert await _user_exists(runtime, bystander["id"])
    assert (await client.get("/api/users/me", headers=bearer(bystander_tokens))).status_code == 200
    assert (await register(client, user["email"]))["email"] == user["email"]  # the address is free again


async def test_the_scheduler_runs_the_purge(clocked) -> None:  # type: ignore[no-untyped-def]
    client, runtime = clocked
    assert deletion.PURGE_SCHEDULE in registered_schedules()
    user, tokens = await new_user(client)
    assert (await _delete(client, tokens)).status_code == 202
    jobs = runtime.services["jobs"]
    async with runtime.db.session() as session:
        assert await session.get(Schedule, deletion.PURGE_SCHEDULE.name) is not None
    runtime.clock.advance(15 * DAY)
    fired = await jobs.scheduler.tick()
    await jobs.drain()
    assert not await _user_exists(runtime, user["id"])
    async with runtime.db.session() as session:
        runs = list(await session.scalars(select(Job).where(Job.kind == deletion.PURGE_JOB)))
    # other hourly schedules fire too; the purge is among what this tick fired
    assert runs and all(r.status == "succeeded" for r in runs) and set(fired) & {r.id for r in runs}
    assert any((r.result or {}).get("purged") == 1 for r in runs)


async def test_a_failing_stop_hook_leaves_the_account_untouched(client) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)

    async def refuse(stop: AccountStop) -> None:
        raise Conflict("An order could not be cancelled; try again.", code="stop_failed")

    ACCOUNT_STOP_HOOKS["tests.refuse"] = refuse
    try:
        resp = await _delete(client, tokens)
    finally:
        ACCOUNT_STOP_HOOKS.pop("tests.refuse")
    assert resp.status_code == 409 and resp.json()["code"] == "stop_failed"
    assert (await client.get("/api/users/me", headers=bearer(tokens))).status_code == 200
    assert (await client.get("/api/users/me/deletion", headers=bearer(tokens))).json()["pending"] is False


@pytest.mark.parametrize("state", ["scheduled", "cancelled", "deleted"])
def test_the_notice_renders_in_every_state(state: str) -> None:
    from tradepilot.email.service import EmailRenderer

    mail = EmailRenderer().render(deletion.DELETION_TEMPLATE, {
        "state": state, "name": None, "ip": "203.0.113.7", "scheduled_for": "2026-01-15 00:00 UTC",
        "occurred_at": "2026-01-01 00:00 UTC"})
    assert "None" not in mail.text and "Hello there" in mail.text and "<p>Hello there" in mail.html
    body = {"scheduled": "2026-01-15 00:00 UTC", "cancelled": "is kept", "deleted": "were deleted"}
    subject = {"scheduled": "scheduled for deletion", "cancelled": "cancelled", "deleted": "was deleted"}
    assert body[state] in mail.text and subject[state] in mail.subject
