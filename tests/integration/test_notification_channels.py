"""The push channels against local servers speaking their protocols: Telegram Bot API, Discord and
Slack webhooks, a Web Push service that decrypts aes128gcm and checks the VAPID JWT. Delivery as
jobs (retries, Retry-After, pace, dead letter, delivery log), the outbound guard on user-supplied
URLs, and Telegram linking and commands (webhook and long polling)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from tests.fakes.notify_servers import TOKEN, NotifyServers
from tests.helpers import bearer, new_user
from tests.integration.notifications_support import NOTIFICATIONS
from tests.integration.orders_support import wait_for
from tests.integration.strategies_support import create_strategy
from tests.integration.strategy_runs_support import SMA_FAST
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.outbound import OutboundClient, OutboundPolicy, OutboundRefused
from tradepilot.identity.models import User
from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.jobs.reaper import reap
from tradepilot.jobs.registry import JobContext
from tradepilot.jobs.worker import JobExecutor
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import NotificationAttempt, NotificationTarget
from tradepilot.notifications.delivery import deliver_notification
from tradepilot.notifications.models import NotificationDelivery
from tradepilot.notifications.service import notifications_of
from tradepilot.notifications.sources import Draft
from tradepilot.notifications.telegram_updates import TelegramPoller
from tradepilot.runtime import Runtime

CHANNELS = f"{NOTIFICATIONS}/channels"
WEBHOOK = f"{NOTIFICATIONS}/telegram/webhook"
SECRET = "webhook-secret-0123456789"
SECRET_HEADER = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


@pytest.fixture
async def servers() -> AsyncIterator[NotifyServers]:
    fake = await NotifyServers().start()
    yield fake
    await fake.stop()


def channel_settings(settings: Settings, servers: NotifyServers, **extra: Any) -> Settings:
    return settings.model_copy(update={
        "telegram_bot_token": SecretStr(TOKEN), "telegram_api_url": servers.url,
        "telegram_bot_username": "tp_test_bot", "telegram_webhook_secret": SecretStr(SECRET), "outbound_allowed_hosts": [f"127.0.0.1:{servers.port}"],
        "notification_delivery_attempts": 3, **extra})


@pytest.fixture
async def app(settings: Settings, clock: TestClock, servers: NotifyServers):  # type: ignore[no-untyped-def]
    application = create_app(channel_settings(settings, servers), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def use_channels(client: httpx.AsyncClient, tokens: dict, *channels: str) -> None:
    answer = await client.put(f"{NOTIFICATIONS}/settings", json={"channels": {"alerts": ["in_app", *channels]}},
                              headers=bearer(tokens))
    assert answer.status_code == 200, answer.text


async def notify(runtime: Runtime, user_id: str, title: str = "BTC crossed 70000", body: str = "Your alert fired."
                 ) -> uuid.UUID:
    async with runtime.db.transaction() as session:
        user = await session.get(User, uuid.UUID(user_id))
        assert user is not None
        row = await notifications_of(runtime).create(session, user=user, draft=Draft(c.ALERTS, title, body),
                                                     now=runtime.clock.now())
        assert row is not None
        return row.id


async def delivery_jobs(runtime: Runtime, notification_id: uuid.UUID) -> dict[str, Job]:
    async with runtime.db.session() as session:
        rows = (await session.scalars(select(NotificationDelivery)
                                      .where(NotificationDelivery.notification_id == notification_id))).all()
        return {r.channel: await session.get(Job, r.job_id, populate_existing=True) for r in rows}  # type: ignore[misc]


async def wait_job(runtime: Runtime, notification_id: uuid.UUID, channel: str, state: str,
                   attempts: int = 0) -> Job:
    """The channel's delivery job once it is in ``state`` after at least ``attempts`` attempts."""
    found: dict[str, Job] = {}

    async def reached() -> bool:
        job = (await delivery_jobs(runtime, notification_id)).get(channel)
        found["job"] = job  # type: ignore[assignment]
        return job is not None and job.status == state and job.attempts >= attempts
    await wait_for(reached, f"{channel} job {state} after {attempts} attempt(s)", timeout=20.0)
    return found["job"]


async def log_of(client: httpx.AsyncClient, tokens: dict, notification_id: uuid.UUID) -> dict[str, dict]:
    answer = await client.get(f"{NOTIFICATIONS}/{notification_id}/deliveries", headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    return {item["channel"]: item for item in answer.json()["items"]}


async def link_telegram(client: httpx.AsyncClient, tokens: dict, servers: NotifyServers, chat_id: int,
                        runtime: Runtime) -> None:
    linked = await client.post(f"{CHANNELS}/telegram/link", headers=bearer(tokens))
    assert linked.status_code == 201, linked.text
    body = linked.json()
    assert body["link"] == f"https://t.me/tp_test_bot?start={body['code']}"
    update = {"update_id": 500 + chat_id % 1000, "message": {"message_id": 1, "text": body["command"],
                                                              "chat": {"id": chat_id, "type": "private"}}}
    answer = await client.post(WEBHOOK, json=update, headers=SECRET_HEADER)
    assert answer.status_code == 200, answer.text
    assert servers.telegram_texts(chat_id)[-1].startswith("Linked to ")


# --- every channel against its server --------------------------------------------------------


async def test_each_channel_delivers_to_its_server(client: httpx.AsyncClient, runtime: Runtime,
                                                   servers: NotifyServers) -> None:
    profile, tokens = await new_user(client)
    await link_telegram(client, tokens, servers, 4242, runtime)
    for channel, url in (("discord", servers.discord_url("9")), ("slack", servers.slack_url("T1/B1/abc"))):
        saved = await client.put(f"{CHANNELS}/{channel}", json={"url": url, "label": channel}, headers=bearer(tokens))
        assert saved.status_code == 200, saved.text
        assert url not in saved.json()["destination"]  # the secret URL is never shown back whole
    device = await client.post(f"{NOTIFICATIONS}/devices", json={**servers.new_subscription("phone"),
                                                                 "expirationTime": None, "label": "phone"},
                               headers=bearer(tokens))
    assert device.status_code == 201, device.text
    listed = (await client.get(CHANNELS, headers=bearer(tokens))).json()
    assert sorted(t["channel"] for t in listed["targets"]) == ["discord", "slack", "telegram", "webpush"]
    assert listed["telegram_configured"] and len(listed["webpush_public_key"]) == 87  # 65 bytes, base64url

    await use_channels(client, tokens, "telegram", "discord", "slack", "webpush")
    nid = await notify(runtime, profile["id"], title="BTC crossed 70000 @everyone")
    for channel in ("telegram", "discord", "slack", "webpush"):
        await wait_job(runtime, nid, channel, JobStatus.SUCCEEDED)

    tag = f"[#{nid}]"
    assert servers.telegram_texts(4242)[-1].startswith("BTC crossed 70000") and tag in servers.telegram_texts(4242)[-1]
    discord = servers.received["discord:9"]
    assert len(discord) == 1 and tag in discord[0].body["content"]
    assert discord[0].body["allowed_mentions"] == {"parse": []}  # a title cannot ping @everyone
    assert discord[0].headers["Host"] == f"127.0.0.1:{servers.port}"
    slack = servers.received["slack:T1/B1/abc"]
    assert len(slack) == 1 and tag in slack[0].body["text"]
    push = servers.received["push:phone"]
    assert servers.push_errors == []
    assert len(push) == 1 and push[0].body["id"] == str(nid) and push[0].body["title"].startswith("BTC crossed")
    assert push[0].headers["Topic"] == nid.hex and push[0].headers["Content-Encoding"] == "aes128gcm"

    log = await log_of(client, tokens, nid)
    assert {ch: item["state"] for ch, item in log.items()} == {ch: "delivered" for ch in
                                                               ("telegram", "discord", "slack", "webpush")}
    assert [a["outcome"] for a in log["webpush"]["log"]] == ["sent"] and log["webpush"]["log"][0]["status_code"] == 201

    _, other = await new_user(client)  # another user's notification and destinations are not found
    assert (await client.get(f"{NOTIFICATIONS}/{nid}/deliveries", headers=bearer(other))).status_code == 404
    target_id = listed["targets"][0]["id"]
    assert (await client.delete(f"{CHANNELS}/{target_id}", headers=bearer(other))).json()["code"] == \
        "channel_target_not_found"
    assert (await client.delete(f"{CHANNELS}/{target_id}", headers=bearer(tokens))).status_code == 204


async def test_a_user_without_destinations_gets_no_delivery_job(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    await use_channels(client, tokens, "discord", "webpush")
    nid = await notify(runtime, profile["id"])
    assert await delivery_jobs(runtime, nid) == {}


# --- retries, Retry-After, pace, dead letter --------------------------------------------------


async def test_a_server_failing_twice_then_succeeding_delivers_once(client: httpx.AsyncClient, runtime: Runtime,
                                                                   servers: NotifyServers, clock: TestClock) -> None:
    profile, tokens = await new_user(client)
    await client.put(f"{CHANNELS}/discord", json={"url": servers.discord_url("2")}, headers=bearer(tokens))
    await use_channels(client, tokens, "discord")
    servers.script["discord:2"] = [(500, "boom", {}), (502, "bad gateway", {})]
    nid = await notify(runtime, profile["id"])
    job = await wait_job(runtime, nid, "discord", JobStatus.QUEUED, attempts=1)
    assert job.run_after > clock.now()  # backing off
    clock.advance(10)
    await wait_job(runtime, nid, "discord", JobStatus.QUEUED, attempts=2)
    clock.advance(30)
    job = await wait_job(runtime, nid, "discord", JobStatus.SUCCEEDED)
    assert job.attempts == 3 and len(servers.received["discord:2"]) == 1
    log = (await log_of(client, tokens, nid))["discord"]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in log["log"]] == \
        [(1, "failed", 500), (2, "failed", 502), (3, "sent", 204)]


async def test_429_retry_after_is_honoured(client: httpx.AsyncClient, runtime: Runtime, servers: NotifyServers,
                                           clock: TestClock) -> None:
    profile, tokens = await new_user(client)
    await client.put(f"{CHANNELS}/slack", json={"url": servers.slack_url("T/B/rl")}, headers=bearer(tokens))
    await client.put(f"{CHANNELS}/discord", json={"url": servers.discord_url("3")}, headers=bearer(tokens))
    await use_channels(client, tokens, "slack", "discord")
    servers.script["slack:T/B/rl"] = [(429, "rate_limited", {"Retry-After": "120"})]
    servers.script["discord:3"] = [(429, {"message": "You are being rate limited.", "retry_after": 64.5,
                                          "global": False}, {"Retry-After": "65"})]
    start = clock.now()
    nid = await notify(runtime, profile["id"])
    slack = await wait_job(runtime, nid, "slack", JobStatus.QUEUED, attempts=1)
    discord = await wait_job(runtime, nid, "discord", JobStatus.QUEUED, attempts=1)
    assert (slack.run_after - start).total_seconds() >= 120
    assert (discord.run_after - start).total_seconds() >= 64.5  # Discord's precise JSON figure
    clock.advance(100)
    await wait_job(runtime, nid, "discord", JobStatus.SUCCEEDED)
    assert servers.received["slack:T/B/rl"] == []  # still waiting out its Retry-After
    clock.advance(25)
    await wait_job(runtime, nid, "slack", JobStatus.SUCCEEDED)
    log = await log_of(client, tokens, nid)
    assert [a["outcome"] for a in log["slack"]["log"]] == ["rate_limited", "sent"]
    assert log["slack"]["log"][0]["retry_after_seconds"] == 120


async def test_our_pace_defers_a_second_message_to_the_same_chat(client: httpx.AsyncClient, runtime: Runtime,
                                                                  servers: NotifyServers, clock: TestClock) -> None:
    profile, tokens = await new_user(client)
    await link_telegram(client, tokens, servers, 777, runtime)
    await use_channels(client, tokens, "telegram")
    first = await notify(runtime, profile["id"], title="first")
    await wait_job(runtime, first, "telegram", JobStatus.SUCCEEDED)
    second = await notify(runtime, profile["id"], title="second")  # same instant: 1 message/s per chat
    job = (await delivery_jobs(runtime, second))["telegram"]
    await wait_for(lambda: _deferred(runtime, job.id), "deferral")
    job = (await delivery_jobs(runtime, second))["telegram"]
    assert job.attempts == 0 and 0 < (job.run_after - clock.now()).total_seconds() <= 1  # no attempt spent
    assert [t.split("\n")[0] for t in servers.telegram_texts(777)][-1] == "first"
    clock.advance(1)
    await wait_job(runtime, second, "telegram", JobStatus.SUCCEEDED)
    assert servers.telegram_texts(777)[-1].startswith("second")


async def _deferred(runtime: Runtime, job_id: uuid.UUID) -> bool:
    async with runtime.db.session() as session:
        job = await session.get(Job, job_id, populate_existing=True)
        return job is not None and job.error is not None and "rate limit" in job.error


async def test_dead_letter_after_n_failures(client: httpx.AsyncClient, runtime: Runtime, servers: NotifyServers,
                                            clock: TestClock) -> None:
    profile, tokens = await new_user(client)
    await client.put(f"{CHANNELS}/slack", json={"url": servers.slack_url("T/B/dead")}, headers=bearer(tokens))
    await use_channels(client, tokens, "slack")
    servers.script["slack:T/B/dead"] = [(503, "down", {})] * 10
    nid = await notify(runtime, profile["id"])
    for attempt in (1, 2):
        await wait_job(runtime, nid, "slack", JobStatus.QUEUED, attempts=attempt)
        clock.advance(60)
    job = await wait_job(runtime, nid, "slack", JobStatus.DEAD)
    assert job.attempts == 3 and len(servers.script["slack:T/B/dead"]) == 7  # exactly N=3 tries
    log = (await log_of(client, tokens, nid))["slack"]
    assert log["state"] == "dead" and log["attempts"] == 3
    assert [a["outcome"] for a in log["log"]] == ["failed", "failed", "failed", "dead"]


async def test_a_gone_push_subscription_is_removed(client: httpx.AsyncClient, runtime: Runtime,
                                                   servers: NotifyServers) -> None:
    profile, tokens = await new_user(client)
    await client.post(f"{NOTIFICATIONS}/devices", json=servers.new_subscription("old"), headers=bearer(tokens))
    await use_channels(client, tokens, "webpush")
    servers.script["push:old"] = [(410, "expired", {})]
    nid = await notify(runtime, profile["id"])
    await wait_job(runtime, nid, "webpush", JobStatus.DEAD)
    assert (await client.get(CHANNELS, headers=bearer(tokens))).json()["targets"] == []
    assert [a["outcome"] for a in (await log_of(client, tokens, nid))["webpush"]["log"]] == ["gone", "dead"]


# --- the outbound guard on user-supplied URLs -------------------------------------------------


async def test_private_addresses_are_refused_unless_allow_listed(client: httpx.AsyncClient,
                                                                 servers: NotifyServers) -> None:
    _, tokens = await new_user(client)
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/x",
                f"http://localhost:{servers.port}/services/T/B/x",  # a name resolving to 127.0.0.1
                f"http://127.0.0.1:{servers.port + 1}/x"):  # the allow-list names the port
        refused = await client.put(f"{CHANNELS}/slack", json={"url": url}, headers=bearer(tokens))
        assert refused.status_code == 422 and refused.json()["code"] == "webhook_url_refused", url
    push = await client.post(f"{NOTIFICATIONS}/devices", json={**servers.new_subscription("x"),
                                                               "endpoint": "http://10.0.0.1/"}, headers=bearer(tokens))
    assert push.status_code == 422 and push.json()["code"] == "push_endpoint_refused"
    assert (await client.get(CHANNELS, headers=bearer(tokens))).json()["targets"] == []
    for n in range(10):
        added = await client.post(f"{NOTIFICATIONS}/devices", json=servers.new_subscription(f"d{n}"),
                                  headers=bearer(tokens))
        assert added.status_code == 201, added.text
    again = await client.post(f"{NOTIFICATIONS}/devices", json=servers.subscribers["d3"].subscription(
        f"{servers.url}/push/d3"), headers=bearer(tokens))
    assert again.status_code == 201  # the same device again is not an eleventh
    eleventh = await client.post(f"{NOTIFICATIONS}/devices", json=servers.new_subscription("d10"),
                                 headers=bearer(tokens))
    assert eleventh.status_code == 422 and eleventh.json()["code"] == "too_many_devices"


async def test_a_redirect_is_never_followed(servers: NotifyServers) -> None:
    client = OutboundClient(OutboundPolicy(allowed_hosts=frozenset({f"127.0.0.1:{servers.port}"}),
                                           require_https=False))
    with pytest.raises(OutboundRefused) as refused:
        await client.request("POST", f"{servers.url}/redirect", json={"text": "x"})
    assert refused.value.code == "outbound_redirect_refused" and len(servers.received["redirect"]) == 1
    ok = await client.request("POST", servers.slack_url("T/B/ok"), json={"text": "hi"})
    assert ok.status_code == 200 and ok.content == b"ok"
    tiny = OutboundClient(OutboundPolicy(allowed_hosts=client.policy.allowed_hosts, require_https=False,
                                         max_response_bytes=1))
    with pytest.raises(Exception) as too_large:
        await tiny.request("POST", servers.slack_url("T/B/ok"), json={"text": "hi"})
    assert getattr(too_large.value, "code", None) == "outbound_too_large"


async def test_a_webhook_that_redirects_is_dead_lettered(client: httpx.AsyncClient, runtime: Runtime,
                                                         servers: NotifyServers) -> None:
    profile, tokens = await new_user(client)
    saved = await client.put(f"{CHANNELS}/slack", json={"url": f"{servers.url}/redirect"}, headers=bearer(tokens))
    assert saved.status_code == 200
    await use_channels(client, tokens, "slack")
    nid = await notify(runtime, profile["id"])
    await wait_job(runtime, nid, "slack", JobStatus.DEAD)
    log = (await log_of(client, tokens, nid))["slack"]["log"]
    assert log[0]["outcome"] == "failed" and "outbound_redirect_refused" in log[0]["detail"]


# --- Telegram in ------------------------------------------------------------------------------


async def test_a_forged_telegram_update_is_refused(client: httpx.AsyncClient, servers: NotifyServers) -> None:
    update = {"update_id": 9, "message": {"message_id": 1, "text": "/balance", "chat": {"id": 5, "type": "private"}}}
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"},
                    {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]}):
        answer = await client.post(WEBHOOK, json=update, headers=headers)
        assert answer.status_code == 401 and answer.json()["code"] == "telegram_secret_invalid"
    assert servers.received["telegram"] == []


async def test_telegram_commands_are_per_user_and_guarded(client: httpx.AsyncClient, runtime: Runtime,
                                                         servers: NotifyServers) -> None:
    _, alice = await new_user(client)
    _, bob = await new_user(client)
    for tokens, name in ((alice, "Alice swing"), (bob, "Bob secret")):
        created = await client.post("/api/trading/accounts", json={"name": name, "starting_balance": "1234.5"},
                                    headers=bearer(tokens))
        assert created.status_code == 201, created.text
    await link_telegram(client, alice, servers, 1001, runtime)

    async def say(chat_id: int, text: str, update_id: int) -> str:
        answer = await client.post(WEBHOOK, headers=SECRET_HEADER, json={"update_id": update_id, "message": {
            "message_id": update_id, "text": text, "chat": {"id": chat_id, "type": "private"}}})
        assert answer.status_code == 200
        return servers.telegram_texts(chat_id)[-1]

    balance = await say(1001, "/balance", 1)
    assert "Alice swing" in balance and "USDT 1234.5" in balance and "Bob" not in balance
    assert "not linked" in await say(2002, "/balance", 2)  # an unlinked chat learns nothing
    assert "/status" in await say(2002, "/help", 3)
    assert "open orders: 0" in await say(1001, "/status", 4)
    assert await say(1001, "/positions", 5) == "No open positions."
    assert "Trading commands are off" in await say(1001, "/stop grid", 6)
    turned_on = await client.put(f"{CHANNELS}/telegram", json={"trading_commands": True}, headers=bearer(alice))
    assert turned_on.status_code == 200 and turned_on.json()["trading_commands"] is True
    assert await say(1001, "/stop grid", 7) == "You have no strategy named 'grid'."
    sent = len(servers.telegram_texts(1001))
    await say(1001, "/balance", 7)  # the same update again (Telegram retried): answered once
    assert len(servers.telegram_texts(1001)) == sent
    stolen = await say(3003, "/start not-a-code", 8)
    assert "unknown or expired" in stolen
    group = await client.post(f"{CHANNELS}/telegram/link", headers=bearer(bob))
    answer = await client.post(WEBHOOK, headers=SECRET_HEADER, json={"update_id": 10, "message": {
        "message_id": 10, "text": group.json()["command"], "chat": {"id": -100, "type": "group"}}})
    assert answer.status_code == 200 and "private chat" in servers.telegram_texts(-100)[-1]  # groups cannot link
    assert "not linked" in await say(-100, "/balance", 11)


async def test_stop_stops_a_running_strategy_once_trading_commands_are_on(
        client: httpx.AsyncClient, runtime: Runtime, servers: NotifyServers) -> None:
    _, tokens = await new_user(client)
    await link_telegram(client, tokens, servers, 6006, runtime)
    strategy = await create_strategy(client, tokens, SMA_FAST)
    started = await client.post(f"/api/strategies/{strategy['id']}/start", headers=bearer(tokens))
    assert started.status_code == 201, started.text

    async def say(text: str, update_id: int) -> str:
        await client.post(WEBHOOK, headers=SECRET_HEADER, json={"update_id": update_id, "message": {
            "message_id": update_id, "text": text, "chat": {"id": 6006, "type": "private"}}})
        return servers.telegram_texts(6006)[-1]

    assert "running strategies: 1" in await say("/status", 60)
    assert "Trading commands are off" in await say(f"/stop {SMA_FAST['name']}", 61)
    assert (await client.get(f"/api/strategies/{strategy['id']}", headers=bearer(tokens))).json()["status"] == \
        "running"
    await client.put(f"{CHANNELS}/telegram", json={"trading_commands": True}, headers=bearer(tokens))
    assert await say(f"/stop {SMA_FAST['name'].upper()}", 62) == f"Stopped {SMA_FAST['name']}."
    assert (await client.get(f"/api/strategies/{strategy['id']}", headers=bearer(tokens))).json()["status"] == \
        "stopped"
    assert await say(f"/stop {SMA_FAST['name']}", 63) == f"{SMA_FAST['name']} is not running."


async def test_long_polling_answers_each_update_once(client: httpx.AsyncClient, runtime: Runtime,
                                                     servers: NotifyServers, clock: TestClock) -> None:
    _, tokens = await new_user(client)
    code = (await client.post(f"{CHANNELS}/telegram/link", headers=bearer(tokens))).json()["command"]
    servers.add_update(555, code, update_id=70)
    servers.add_update(555, "/positions", update_id=71)
    poller = TelegramPoller(runtime, poll_timeout=0)
    assert await poller.poll_once() == 2 and poller.offset == 72
    texts = servers.telegram_texts(555)
    assert texts[0].startswith("Linked to ") and texts[1] == "No open positions."
    # a restart loses the offset: Telegram hands out every unconfirmed update again
    assert await TelegramPoller(runtime, poll_timeout=0).poll_once() == 2
    assert len(servers.telegram_texts(555)) == 2
    async with runtime.db.session() as session:
        linked = (await session.scalars(select(NotificationTarget).where(NotificationTarget.channel == "telegram"))).all()
        assert len(linked) == 1


async def test_the_polling_process_answers_updates(settings: Settings, clock: TestClock,
                                                   servers: NotifyServers) -> None:
    """With TRADEPILOT_TELEGRAM_POLLING the app long-polls under its lease and answers by itself."""
    application = create_app(channel_settings(settings, servers, telegram_polling=True), clock=clock)
    async with application.router.lifespan_context(application):
        servers.add_update(8080, "/help", update_id=4000)
        await wait_for(lambda: bool(servers.telegram_texts(8080)), "a reply to the polled update", timeout=30.0)
        assert servers.telegram_texts(8080)[0].startswith("TradePilot bot.")


# --- crash points -----------------------------------------------------------------------------


@pytest.fixture
async def manual_app(settings: Settings, clock: TestClock, servers: NotifyServers):  # type: ignore[no-untyped-def]
    """Jobs are recorded but not run by this process: the test plays the worker (and its death)."""
    application = create_app(channel_settings(settings, servers, jobs_inprocess=False), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def manual_client(manual_app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=manual_app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _claim_as_doomed_worker(runtime: Runtime, job_id: uuid.UUID) -> None:
    """What a worker does first (queued → running, attempt 1) — after which it will die."""
    async with runtime.db.transaction() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.RUNNING, worker_id="doomed:1:x", attempts=Job.attempts + 1,
            started_at=runtime.clock.now(), heartbeat_at=runtime.clock.now()))


async def _recover_and_run(runtime: Runtime, clock: TestClock, job_id: uuid.UUID) -> Job:
    """Time passes, the reaper notices the silent worker, a healthy worker runs the job."""
    config = JobsConfig.from_settings(runtime.settings)
    clock.advance(config.heartbeat_timeout_seconds + 1)
    assert (await reap(runtime, timeout_seconds=config.heartbeat_timeout_seconds)).requeued == 1
    await JobExecutor(runtime, config).run(str(job_id))
    async with runtime.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def _setup_discord(client: httpx.AsyncClient, runtime: Runtime, servers: NotifyServers,
                         name: str) -> tuple[dict, uuid.UUID, Job]:
    profile, tokens = await new_user(client)
    await client.put(f"{CHANNELS}/discord", json={"url": servers.discord_url(name)}, headers=bearer(tokens))
    await use_channels(client, tokens, "discord")
    nid = await notify(runtime, profile["id"])
    job = (await delivery_jobs(runtime, nid))["discord"]
    assert job.status == JobStatus.QUEUED
    return tokens, nid, job


async def test_a_worker_dying_before_sending_delivers_once(manual_client: httpx.AsyncClient, manual_app,  # type: ignore[no-untyped-def]
                                                           servers: NotifyServers, clock: TestClock) -> None:
    runtime = manual_app.state.runtime
    tokens, nid, job = await _setup_discord(manual_client, runtime, servers, "c1")
    await _claim_as_doomed_worker(runtime, job.id)  # …and the process is gone before any request
    assert servers.received["discord:c1"] == []
    final = await _recover_and_run(runtime, clock, job.id)
    assert final.status == JobStatus.SUCCEEDED and final.attempts == 2
    assert len(servers.received["discord:c1"]) == 1
    log = (await log_of(manual_client, tokens, nid))["discord"]["log"]
    assert [(a["attempt"], a["outcome"]) for a in log] == [(2, "sent")]


async def test_a_worker_dying_after_the_remote_accepted_sends_one_duplicate_with_the_same_id(
        manual_client: httpx.AsyncClient, manual_app, servers: NotifyServers, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    runtime = manual_app.state.runtime
    _, nid, job = await _setup_discord(manual_client, runtime, servers, "c2")
    await _claim_as_doomed_worker(runtime, job.id)
    accepted = asyncio.Event()
    never = asyncio.Event()

    async def stall_once(key: str) -> None:  # the remote has the message; our worker will never hear back
        if not accepted.is_set():
            accepted.set()
            await never.wait()
    servers.after_accept = stall_once
    ctx = JobContext(runtime=runtime, job_id=job.id, kind=c.DELIVER_KIND, attempt=1, max_attempts=3,
                     user_id=job.user_id, _report=lambda f, m: asyncio.sleep(0))
    doomed = asyncio.create_task(deliver_notification(ctx, nid, "discord"))
    await asyncio.wait_for(accepted.wait(), timeout=20)
    doomed.cancel()  # the process dies here: nothing after the send is recorded
    with pytest.raises(asyncio.CancelledError):
        await doomed
    never.set()
    final = await _recover_and_run(runtime, clock, job.id)
    assert final.status == JobStatus.SUCCEEDED
    received = servers.received["discord:c2"]
    assert len(received) == 2  # one duplicate at most…
    assert all(f"[#{nid}]" in r.body["content"] for r in received)  # …carrying the same notification id
    async with runtime.db.session() as session:
        outcomes = (await session.scalars(select(NotificationAttempt.outcome)
                                          .where(NotificationAttempt.notification_id == nid))).all()
    assert list(outcomes) == ["sent"]
    await JobExecutor(runtime, JobsConfig.from_settings(runtime.settings)).run(str(job.id))  # a stray redelivery
    assert len(servers.received["discord:c2"]) == 2


async def test_email_carries_the_notification_id(client: httpx.AsyncClient, runtime: Runtime) -> None:
    profile, tokens = await new_user(client)
    await use_channels(client, tokens, "email")
    nid = await notify(runtime, profile["id"])
    job = (await delivery_jobs(runtime, nid))["email"]
    assert job.kind == "email.send"
    await wait_job(runtime, nid, "email", JobStatus.SUCCEEDED)
    async with runtime.db.session() as session:
        done = await session.get(Job, job.id)
    assert done is not None and done.result is not None
    assert done.result["message_id"].startswith(f"<notification-{nid}@")
