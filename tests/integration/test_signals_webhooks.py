"""Inbound signal webhooks: the secret URL (shown once, stored hashed), wrong secrets and
unknown keys answering one 404, rotation, revocation, payload validation and the per-webhook
rate limit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, update

from tests.integration.signals_support import SIGNALS, key_user
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.identity.models import User
from tradepilot.runtime import Runtime
from tradepilot.signals.models import SignalWebhook

HOOK = f"{SIGNALS}/webhook"
ALERT = {"symbol": "BTC-USDT", "side": "buy", "strength": 0.7, "take_profit": "80000",
         "reason": "TradingView: RSI crossed 30"}


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"signals_webhook_per_minute": 4}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


def _problem(answer: httpx.Response) -> dict:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    body = answer.json()
    body.pop("request_id")
    return body  # type: ignore[no-any-return]


async def test_secret_url_rotation_revocation_and_rate_limit(client: httpx.AsyncClient, runtime: Runtime) -> None:
    auth = await key_user(client)
    assert (await client.get(HOOK, headers=auth)).status_code == 404
    created = await client.post(HOOK, headers=auth)
    assert created.status_code == 201, created.text
    hook = created.json()
    secret, url = hook["secret"], hook["url_path"]
    assert url.endswith("_" + secret) and len(secret) >= 43
    assert (await client.post(HOOK, headers=auth)).json()["code"] == "webhook_exists"
    shown = (await client.get(HOOK, headers=auth)).json()
    assert secret not in str(shown) and shown["path"] == url.removesuffix(secret) + "…"
    async with runtime.db.session() as session:
        row = await session.scalar(select(SignalWebhook))
    assert row is not None and secret not in row.secret_hash and len(row.secret_hash) == 64  # an HMAC, not the secret

    # a TradingView alert: no credential but the URL
    received = await client.post(url, json=ALERT)
    assert received.status_code == 201, received.text
    signal = received.json()
    assert (signal["source"], signal["symbol"], signal["side"], signal["take_profit"]) == \
        ("webhook", "BTC/USDT", "buy", "80000")
    listed = (await client.get(SIGNALS, params={"source": "webhook"}, headers=auth)).json()["items"]
    assert [s["id"] for s in listed] == [signal["id"]]
    assert (await client.get(HOOK, headers=auth)).json()["last_used_at"] is not None

    # a wrong secret and an unknown key: the same 404, nothing stored
    key = url.rsplit("/", 1)[1].split("_", 1)[0]
    wrong_secret = await client.post(f"{HOOK}/{key}_{'x' * len(secret)}", json=ALERT)
    unknown_key = await client.post(f"{HOOK}/{'0' * 16}_{secret}", json=ALERT)
    no_separator = await client.post(f"{HOOK}/{key}{secret}", json=ALERT)
    assert wrong_secret.status_code == unknown_key.status_code == no_separator.status_code == 404
    assert _problem(wrong_secret) == _problem(unknown_key) == _problem(no_separator)
    assert _problem(wrong_secret)["code"] == "webhook_not_found"

    # payloads that are not a signal: 422 problem+json
    for bad in ({"symbol": "BTC/USDT"}, {"symbol": "BTC/USDT", "side": "buy", "strength": "very"},
                {"symbol": "BTC/USDT", "side": "buy", "extra": 1}, ["not", "an", "object"]):
        answer = await client.post(url, json=bad)
        assert answer.status_code == 422, answer.text
        assert _problem(answer)["code"] == "validation_error"
    text = await client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert text.status_code in (400, 422) and text.headers["content-type"].startswith("application/problem+json")
    assert len((await client.get(SIGNALS, headers=auth)).json()["items"]) == 1

    # rotation: the old URL stops working at once, the new one works
    rotated = await client.post(f"{HOOK}/rotate", headers=auth)
    assert rotated.status_code == 200
    new_url = rotated.json()["url_path"]
    assert new_url != url
    assert (await client.post(url, json=ALERT)).status_code == 404
    assert (await client.post(new_url, json=ALERT)).status_code == 201

    # the per-webhook limit (4 a minute here): one spent above; three more pass, the fifth is refused
    for _ in range(3):
        assert (await client.post(new_url, json=ALERT)).status_code == 201
    limited = await client.post(new_url, json=ALERT)
    assert limited.status_code == 429 and _problem(limited)["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert len((await client.get(SIGNALS, headers=auth)).json()["items"]) == 5

    # a suspended owner's webhook takes nothing (as if it did not exist); reactivated, it works again
    owner = (await client.get("/api/users/me", headers=auth)).json()["id"]
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(owner)).values(suspended_at=datetime.now(UTC)))
    suspended = await client.post(new_url, json=ALERT)
    assert suspended.status_code == 404 and _problem(suspended)["code"] == "webhook_not_found"
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(owner)).values(suspended_at=None))

    # revoked: the URL is gone; another user's management calls never see this webhook
    other = await key_user(client)
    assert (await client.get(HOOK, headers=other)).status_code == 404
    assert (await client.delete(HOOK, headers=auth)).status_code == 204
    assert (await client.post(new_url, json=ALERT)).status_code == 404
    assert (await client.delete(HOOK, headers=auth)).status_code == 404
    assert (await client.post(f"{HOOK}/rotate", headers=auth)).status_code == 404
