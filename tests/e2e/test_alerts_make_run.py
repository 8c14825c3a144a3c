"""Issue 10's "Done when": `make run`'s steps (migrate, demo-user, serve with the simulated
market), SMTP pointed at a local aiosmtpd and the demo user's Discord webhook at a local server
speaking Discord's format. A price alert a little above the simulated price fires once, and its
notification appears in `/api/notifications`, on the WebSocket `account` channel, by email and
on the webhook — each once, each carrying the notification's id."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.servers import PatientTransport, make_run
from tests.fakes.notify_servers import NotifyServers
from tests.mail import SmtpServer, text_of

pytestmark = pytest.mark.slow

SYMBOL = "BTC/USDT"
TICK = Decimal("0.01")
HOOK = "discord:e2e"  # what the local Discord server received on the webhook `discord_url("e2e")`


async def _prices(http: httpx.AsyncClient, seconds: float) -> list[Decimal]:
    """BTC/USDT's last trade price, sampled for ``seconds`` (waiting for the first one)."""
    seen: list[Decimal] = []
    deadline = time.monotonic() + 60
    end = None
    while end is None or time.monotonic() < end:
        items = (await http.get("/api/market/prices")).json()["items"]
        price = next(p["price"] for p in items if p["symbol"] == SYMBOL)
        if price is not None:
            seen.append(Decimal(price))
            end = end or time.monotonic() + seconds
        assert time.monotonic() < deadline, "no BTC/USDT price from the simulated market"
        await asyncio.sleep(0.2)
    return seen


async def _until(check: Any, what: str, timeout: float = 120.0) -> Any:
    """Poll once a second: the demo user's free plan allows 120 requests a minute, and a poll
    faster than that would wait out 429s instead of seeing what it waits for."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(1.0)


async def _alert_that_fires(http: httpx.AsyncClient, tries: int = 4) -> tuple[dict, Decimal, dict]:
    """"A little above": an alert one tick above the last trade price, and its row once it
    fired. The simulated walk usually rises that far within seconds, but a random walk can stay
    below a level for minutes: an alert the market has not reached in 40 s is paused (it can
    fire no more), deleted, and set again one tick above the price then."""
    for _ in range(tries):
        prices = await _prices(http, 1.0)
        threshold = prices[-1] + TICK
        answer = await http.post("/api/alerts/price", json={"symbol": SYMBOL, "condition": "above",
                                                            "price": str(threshold), "message": "e2e"})
        assert answer.status_code == 201, answer.text
        alert = answer.json()

        async def fired(alert_id: str = alert["id"]) -> dict | None:
            row = (await http.get(f"/api/alerts/{alert_id}")).json()
            return row if row["status"] == "triggered" else None

        try:
            return alert, threshold, await _until(fired, f"the alert at {threshold} to fire", timeout=40.0)
        except AssertionError:
            paused = await http.put(f"/api/alerts/{alert['id']}/status", json={"status": "paused"})
        if paused.status_code == 200:  # not reached: set it again at the price now
            assert (await http.delete(f"/api/alerts/{alert['id']}")).status_code == 204
            continue
        row = await fired()  # it fired just before the pause (409 alert_final)
        assert row is not None, paused.text
        return alert, threshold, row
    raise AssertionError(f"the simulated market never rose one tick within 40 s, {tries} times")


async def _scenario(url: str, demo_email: str, demo_password: str, smtp: SmtpServer, hooks: NotifyServers) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as anonymous:
        login = await anonymous.post("/api/auth/login", json={"email": demo_email, "password": demo_password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30, transport=PatientTransport()) as http, \
            connect(url.replace("http://", "ws://") + "/api/ws", open_timeout=10) as ws:
        # the alerts category on the centre, email and a Discord webhook (a local one, allow-listed)
        answer = await http.put("/api/notifications/channels/discord", json={"url": hooks.discord_url("e2e")})
        assert answer.status_code == 200, answer.text
        answer = await http.put("/api/notifications/settings",
                                json={"channels": {"alerts": ["in_app", "email", "discord"]}})
        assert answer.status_code == 200, answer.text

        seen: list[dict] = []

        async def read_until(done: Any, what: str, timeout: float = 90.0) -> None:
            try:
                async with asyncio.timeout(timeout):
                    while not done():
                        message = json.loads(await ws.recv())
                        assert message["type"] != "error", message
                        seen.append(message)
            except TimeoutError:
                raise AssertionError(f"no {what}; got {[m['type'] for m in seen][-20:]}") from None

        def created() -> list[dict]:
            return [m["data"]["payload"]["notification"] for m in seen
                    if m["type"] == "event" and m.get("channel") == "account"
                    and m["data"]["type"] == "notification.created"]

        await ws.send(json.dumps({"type": "auth", "token": token}))
        await read_until(lambda: any(m["type"] == "authenticated" for m in seen), "authentication")
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account"]}))
        await read_until(lambda: any(m["type"] == "subscribed" for m in seen), "subscription")

        alert, threshold, row = await _alert_that_fires(http)
        assert row["trigger_count"] == 1
        [trigger] = (await http.get(f"/api/alerts/{alert['id']}/triggers")).json()["items"]
        assert Decimal(trigger["value"]) >= threshold

        # in the centre
        async def listed() -> list[dict]:
            items = (await http.get("/api/notifications", params={"category": "alerts"})).json()["items"]
            return [n for n in items if n["data"].get("alert_id") == alert["id"]]

        [notification] = await _until(listed, "the alert's notification in /api/notifications")
        assert notification["read_at"] is None and SYMBOL in notification["title"]
        # on the WebSocket account channel
        await read_until(lambda: any(n["id"] == notification["id"] for n in created()),
                         "notification.created on the account channel")
        # by email: one message, its Message-ID the notification's
        mail = await smtp.inbox.wait_for(demo_email, SYMBOL, timeout=90)
        assert f"notification-{notification['id']}@" in str(mail["Message-ID"])
        assert f"[#{notification['id']}]" in text_of(mail)
        assert mail.get_body(preferencelist=("html",)) is not None
        # and on the webhook, with the same id
        await _until(lambda: _async(hooks.received[HOOK]), "the Discord webhook call")
        [call] = hooks.received[HOOK]
        assert f"[#{notification['id']}]" in call.body["content"]

        # each once: nothing more arrives while the market keeps trading through the threshold
        answer = await http.get(f"/api/notifications/{notification['id']}/deliveries")
        assert answer.status_code == 200, answer.text
        deliveries = answer.json()["items"]
        assert {d["channel"]: d["state"] for d in deliveries} == {"email": "delivered", "discord": "delivered"}
        await asyncio.sleep(3.0)
        assert len(await listed()) == 1
        assert len([n for n in created() if n["data"].get("alert_id") == alert["id"]]) == 1
        assert len([m for m in smtp.inbox.to(demo_email) if SYMBOL in str(m["Subject"])]) == 1
        assert len(hooks.received[HOOK]) == 1
        assert (await http.get(f"/api/alerts/{alert['id']}")).json()["trigger_count"] == 1


async def _async(value: Any) -> Any:
    return value


async def _run(tmp_path: Any) -> None:
    hooks = await NotifyServers().start()
    try:
        with SmtpServer() as smtp:
            server, demo = await asyncio.to_thread(
                make_run, tmp_path, smtp_host="127.0.0.1", smtp_port=str(smtp.port), smtp_starttls="false",
                outbound_allowed_hosts=f"127.0.0.1:{hooks.port}", market_tick_interval_seconds="0.1")
            try:
                await asyncio.to_thread(server.wait_ready, 120)
                await _scenario(server.url, demo.email, demo.password, smtp, hooks)
            finally:
                server.stop()
    finally:
        await hooks.stop()


@pytest.mark.timeout(300)
def test_make_run_price_alert_fires_once_in_app_on_the_websocket_by_email_and_webhook(tmp_path) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_run(tmp_path))
