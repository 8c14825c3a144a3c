"""The notification centre: endpoints, outbox-made notifications (exactly once), quiet hours
and the digest, the account stream, the email channel."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import event, select

from tests.helpers import bearer, login, new_user
from tests.integration.admin_support import make_admin
from tests.integration.notifications_support import (
    NOTIFICATIONS,
    count_notifications,
    emit_user_event,
    listing,
    wait_for_notifications,
)
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.events import Topics
from tradepilot.core.outbox import Pending, emit_many, row_to_event
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.email.service import SEND_KIND
from tradepilot.jobs.models import Job
from tradepilot.notifications.consumer import BATCH_SIZE, notifier_of
from tradepilot.notifications.digest import release_due_digests
from tradepilot.notifications.models import Notification, NotificationDelivery


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"notifications_consumer_enabled": True}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def note(client: httpx.AsyncClient, tokens: dict, title: str, **extra: object) -> httpx.Response:
    return await client.post(NOTIFICATIONS, json={"title": title, **extra}, headers=bearer(tokens))


async def test_notes_list_read_and_delete(client: httpx.AsyncClient, clock: TestClock) -> None:
    _, tokens = await new_user(client)
    ids = []
    for i in range(3):
        created = await note(client, tokens, f"note {i}", body="remember")
        assert created.status_code == 201, created.text
        assert created.json()["category"] == "notes" and created.json()["read_at"] is None
        ids.append(created.json()["id"])
        clock.advance(1)
    first = await listing(client, tokens, limit=2)
    assert [n["title"] for n in first["items"]] == ["note 2", "note 1"] and first["next_cursor"]
    second = await listing(client, tokens, limit=2, cursor=first["next_cursor"])
    assert [n["title"] for n in second["items"]] == ["note 0"] and second["next_cursor"] is None

    read = await client.put(f"{NOTIFICATIONS}/{ids[0]}/read", headers=bearer(tokens))
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert [n["id"] for n in (await listing(client, tokens, unread="true"))["items"]] == [ids[2], ids[1]]
    assert [n["id"] for n in (await listing(client, tokens, unread="false"))["items"]] == [ids[0]]
    marked = await client.put(f"{NOTIFICATIONS}/read-all", headers=bearer(tokens))
    assert marked.status_code == 200 and marked.json() == {"marked": 2}
    assert (await listing(client, tokens, unread="true"))["items"] == []

    gone = await client.delete(f"{NOTIFICATIONS}/{ids[1]}", headers=bearer(tokens))
    assert gone.status_code == 204
    assert [n["id"] for n in (await listing(client, tokens))["items"]] == [ids[2], ids[0]]


async def test_another_users_notification_is_not_found(client: httpx.AsyncClient) -> None:
    _, owner = await new_user(client)
    _, other = await new_user(client)
    mine = (await note(client, owner, "private")).json()["id"]
    for method, path in (("PUT", f"{NOTIFICATIONS}/{mine}/read"), ("DELETE", f"{NOTIFICATIONS}/{mine}"),
                         ("PUT", f"{NOTIFICATIONS}/{uuid.uuid4()}/read")):
        answer = await client.request(method, path, headers=bearer(other))
        assert answer.status_code == 404 and answer.json()["code"] == "notification_not_found"
    assert (await listing(client, other))["items"] == []
    assert (await listing(client, owner))["items"][0]["read_at"] is None


async def test_validation_errors_are_problems(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    for body in ({"title": ""}, {"title": "   "}, {"title": "x" * 201}, {"title": "t", "colour": "red"}, {}):
        answer = await client.post(NOTIFICATIONS, json=body, headers=bearer(tokens))
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "validation_error"
    bad_cursor = await client.get(NOTIFICATIONS, params={"cursor": "nope"}, headers=bearer(tokens))
    assert bad_cursor.status_code == 400 and bad_cursor.json()["code"] == "invalid_cursor"
    for settings in ({"channels": {"fills": ["pigeon"]}}, {"channels": {"weather": ["email"]}},
                     {"quiet_hours": {"start": "25:00", "end": "07:00"}},
                     {"quiet_hours": {"start": "22:00", "end": "22:00"}}, {"quiet_hours": {"start": "22:00"}}):
        answer = await client.put(f"{NOTIFICATIONS}/settings", json=settings, headers=bearer(tokens))
        assert answer.status_code == 422, settings
    assert (await client.get(NOTIFICATIONS)).status_code == 401
    forbidden = await note(client, tokens, "hello all", broadcast=True)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "admin_required"


async def test_an_admin_broadcast_reaches_every_user(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    _, alice = await new_user(client)
    _, bob = await new_user(client)
    _, admin = await make_admin(client, runtime)
    sent = await note(client, admin, "Maintenance at 02:00 UTC", body="About ten minutes.", broadcast=True)
    assert sent.status_code == 201 and sent.json() == {"recipients": 3}
    for tokens in (alice, bob, admin):
        items = (await listing(client, tokens))["items"]
        assert [(n["category"], n["title"]) for n in items] == [("announcements", "Maintenance at 02:00 UTC")]


async def test_settings_round_trip(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    default = (await client.get(f"{NOTIFICATIONS}/settings", headers=bearer(tokens))).json()
    assert default["channels"]["alerts"] == ["in_app", "email"] and default["quiet_hours"] is None
    assert default["timezone"] == "UTC" and default["available_channels"] == ["in_app", "email", "telegram", "discord", "slack", "webpush"]
    changed = await client.put(f"{NOTIFICATIONS}/settings", headers=bearer(tokens), json={
        "channels": {"fills": ["in_app", "email"], "orders": []}, "quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["channels"]["fills"] == ["in_app", "email"] and body["channels"]["orders"] == []
    assert body["channels"]["alerts"] == ["in_app", "email"]  # untouched
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    cleared = await client.put(f"{NOTIFICATIONS}/settings", json={"quiet_hours": None}, headers=bearer(tokens))
    assert cleared.json()["quiet_hours"] is None and cleared.json()["channels"]["fills"] == ["in_app", "email"]


async def test_an_outbox_event_makes_exactly_one_notification(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    stream = runtime.services["streaming"].stream_account_updates(profile["id"])
    async with stream as events:
        event_id = await emit_user_event(runtime, profile["id"], "strategy.stopped",
                                         {"title": "Strategy grid-1 stopped", "body": "It hit its loss limit."})
        await wait_for_notifications(runtime, profile["id"], 1)
        pushed = None
        async with asyncio.timeout(5):
            async for event in events:
                if event.type == "notification.created":
                    pushed = event
                    break
    assert pushed is not None and pushed.seq is not None
    assert pushed.payload["notification"]["title"] == "Strategy grid-1 stopped"
    items = (await listing(client, tokens))["items"]
    assert [(n["category"], n["title"], n["body"]) for n in items] == [
        ("strategies", "Strategy grid-1 stopped", "It hit its loss limit.")]
    # delivered twice (a redelivery, a rescan from an older cursor): still one notification
    async with runtime.db.session() as session:
        row = row_to_event(await session.get(OutboxEvent, event_id))
    assert await notifier_of(runtime).handle(row) == 0
    await asyncio.gather(notifier_of(runtime).handle(row), notifier_of(runtime).handle(row))
    assert await count_notifications(runtime, profile["id"]) == 1


async def queued_events(runtime, user_id: str) -> dict[str, bool | None]:  # type: ignore[no-untyped-def]
    """The user's outbox events by type: whether each is still queued for the notifier."""
    async with runtime.db.session() as session:
        rows = (await session.execute(select(OutboxEvent.type, OutboxEvent.notify)
                                      .where(OutboxEvent.user_id == uuid.UUID(user_id)))).all()
    return {type_: notify for type_, notify in rows}


async def test_only_events_that_notify_are_queued_and_handling_clears_them(  # type: ignore[no-untyped-def]
        settings: Settings, clock: TestClock) -> None:
    application = create_app(settings, clock=clock)  # the consumer off: the queue is seen as written
    async with application.router.lifespan_context(application):
        runtime = application.state.runtime
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as client:
            profile, _ = await new_user(client)
        user_id = profile["id"]
        order = {"id": str(uuid.uuid4()), "symbol": "BTC/USDT", "side": "buy", "quantity": "1"}
        await emit_user_event(runtime, user_id, "order.updated", {"order": {**order, "status": "new"}})
        await emit_user_event(runtime, user_id, "balance.updated", {"asset": "USDT"})
        await emit_user_event(runtime, user_id, "security.new_device", {"title": "New sign-in"})
        queued = await queued_events(runtime, user_id)
        assert {t: queued[t] for t in ("order.updated", "balance.updated", "security.new_device")} == {
            "order.updated": None, "balance.updated": None, "security.new_device": True}
        assert queued["account.created"] is None  # registration's own events notify nothing
        await emit_user_event(runtime, user_id, "order.updated", {"order": {**order, "status": "filled"}})
        assert await notifier_of(runtime).process_pending() == 2
        assert set((await queued_events(runtime, user_id)).values()) == {None}
        assert await notifier_of(runtime).process_pending() == 0  # nothing left: nothing made twice
        assert await count_notifications(runtime, user_id) == 2


async def test_a_backlog_is_handled_in_batches_exactly_once(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, _ = await new_user(client)
    user_id = uuid.UUID(profile["id"])
    notifier = notifier_of(runtime)
    await notifier.stop()  # a backlog builds while no process holds the consumer
    async with runtime.db.transaction() as session:
        await emit_many(session, [Pending(topic=Topics.user(user_id, "strategies"), type="strategy.stopped",
                                          user_id=user_id, payload={"title": f"run {i} stopped"})
                                  for i in range(BATCH_SIZE + 50)])
    claims = []

    def claim(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE OUTBOX_EVENT SET NOTIFY"):
            claims.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", claim)
    try:
        assert await notifier.process_pending() == BATCH_SIZE + 50
    finally:
        event.remove(engine, "before_cursor_execute", claim)
    assert len(claims) == 2  # one claim (one write transaction) per batch, not per event
    async with runtime.db.session() as session:
        titles = (await session.scalars(select(Notification.title).where(Notification.user_id == user_id))).all()
    assert sorted(titles) == sorted(f"run {i} stopped" for i in range(BATCH_SIZE + 50))
    assert await notifier.process_pending() == 0


async def test_a_category_turned_off_makes_no_notification(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)
    await client.put(f"{NOTIFICATIONS}/settings", json={"channels": {"strategies": []}}, headers=bearer(tokens))
    await emit_user_event(runtime, profile["id"], "strategy.stopped", {"title": "ignored"})
    await emit_user_event(runtime, profile["id"], "security.new_device", {"title": "New sign-in"})
    await wait_for_notifications(runtime, profile["id"], 1)
    assert [n["category"] for n in (await listing(client, tokens))["items"]] == ["security"]


async def test_quiet_hours_hold_then_one_digest(client: httpx.AsyncClient, runtime, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    profile, tokens = await new_user(client)  # time zone UTC; the test clock says 2026-01-01 00:00 UTC
    await client.put(f"{NOTIFICATIONS}/settings", headers=bearer(tokens), json={
        "quiet_hours": {"start": "23:00", "end": "01:00"}, "channels": {"strategies": ["in_app", "email"]}})
    for name in ("a", "b"):
        await emit_user_event(runtime, profile["id"], "strategy.stopped", {"title": f"Strategy {name} stopped"})
    await emit_user_event(runtime, profile["id"], "security.new_device", {"title": "New sign-in"})
    await wait_for_notifications(runtime, profile["id"], 3)
    held = [n for n in (await listing(client, tokens))["items"] if n["held_until"]]
    assert sorted(n["title"] for n in held) == ["Strategy a stopped", "Strategy b stopped"]
    assert {n["held_until"] for n in held} == {"2026-01-01T01:00:00Z"}
    async with runtime.db.session() as session:  # nothing pushed by email while quiet
        assert (await session.scalars(select(NotificationDelivery))).all() == []

    assert await release_due_digests(runtime) == 0  # still quiet
    clock.advance(3600)
    assert await release_due_digests(runtime) == 1
    assert await release_due_digests(runtime) == 0  # merged once
    tokens = await login(client, profile["email"])  # the access token expired meanwhile
    digest = (await listing(client, tokens, category="digest"))["items"]
    assert len(digest) == 1 and digest[0]["title"] == "While quiet hours were on: 2 notifications"
    assert "Strategy a stopped" in digest[0]["body"] and "Strategy b stopped" in digest[0]["body"]
    async with runtime.db.session() as session:
        merged = (await session.scalars(select(Notification).where(Notification.digest_id.is_not(None)))).all()
        deliveries = (await session.scalars(select(NotificationDelivery))).all()
        jobs = (await session.scalars(select(Job).where(Job.kind == SEND_KIND))).all()
    assert len(merged) == 2 and {str(n.digest_id) for n in merged} == {digest[0]["id"]}
    assert [(str(d.notification_id), d.channel) for d in deliveries] == [(digest[0]["id"], "email")]
    assert deliveries[0].job_id in {job.id for job in jobs}  # the digest went out as one email job


async def test_telegram_is_off_without_a_bot(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    link = await client.post(f"{NOTIFICATIONS}/channels/telegram/link", headers=bearer(tokens))
    assert link.status_code == 409 and link.json()["code"] == "telegram_not_configured"
    update = {"update_id": 1, "message": {"message_id": 1, "text": "/balance", "chat": {"id": 1, "type": "private"}}}
    hook = await client.post(f"{NOTIFICATIONS}/telegram/webhook", json=update,
                             headers={"X-Telegram-Bot-Api-Secret-Token": ""})
    assert hook.status_code == 404
