"""Idempotency-Key with Stripe's semantics, through a real route on SQLite and PostgreSQL.

The route below is mounted only in this module's app: it counts its executions and writes
its answer with ``idem.respond`` in a transaction, as the trading routes do.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel

from tests.helpers import bearer, new_user
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core import idempotency as store
from tradepilot.core.clock import TestClock
from tradepilot.core.deps import RuntimeDep
from tradepilot.core.errors import Unprocessable
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Money
from tradepilot.identity.idempotency import Idempotency, prune_idempotency_records

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
router = api_router()


class ThingIn(BaseModel):
    amount: Money
    label: str = ""
    fail: bool = False


class ThingOut(BaseModel):
    id: uuid.UUID
    amount: Money
    label: str


@router.post("/api/test/things", status_code=201)
async def make_thing(body: ThingIn, idem: Idempotency, runtime: RuntimeDep):  # type: ignore[no-untyped-def]
    if idem.replay is not None:
        return idem.replay
    CALLS[body.label] += 1
    gate = GATES.get(body.label)
    if gate is not None:
        await gate.wait()
    if body.fail:
        raise Unprocessable("asked to fail", code="asked_to_fail")
    async with runtime.db.transaction() as session:
        return await idem.respond(session, ThingOut(id=uuid.uuid4(), amount=body.amount, label=body.label),
                                  status=201, headers={"Location": "/api/test/things/x"})


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings, clock=clock)
    application.include_router(router)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    _, tokens = await new_user(client)
    return bearer(tokens)


def label() -> str:
    return uuid.uuid4().hex


async def post(client: httpx.AsyncClient, auth: dict[str, str], key: str | None, body: dict) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key is not None else {})}
    return await client.post("/api/test/things", json=body, headers=headers)


async def test_a_retry_gets_the_stored_answer_and_does_not_act_again(client, auth) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    first = await post(client, auth, key, {"amount": "0.1", "label": name})
    # the same body, written differently (key order, number vs string spacing), is the same request
    again = await client.post("/api/test/things", content=f'{{ "label": "{name}",  "amount": "0.1" }}',
                              headers={**auth, "Idempotency-Key": key, "Content-Type": "application/json"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.json()["amount"] == "0.1"
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"]
    assert CALLS[name] == 1


async def test_the_same_key_with_another_body_is_refused(client, auth) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    assert (await post(client, auth, key, {"amount": "1", "label": name})).status_code == 201
    other = await post(client, auth, key, {"amount": "2", "label": name})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert other.headers["content-type"].startswith("application/problem+json")
    assert CALLS[name] == 1


async def test_twenty_concurrent_requests_with_one_key_act_once(client, auth) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    GATES[name] = asyncio.Event()
    first = asyncio.create_task(post(client, auth, key, {"amount": "5", "label": name}))
    while CALLS[name] == 0:  # the first request holds the key and is running
        await asyncio.sleep(0.005)
    racing = await asyncio.gather(*(post(client, auth, key, {"amount": "5", "label": name}) for _ in range(19)))
    assert {r.status_code for r in racing} == {409}
    assert {r.json()["code"] for r in racing} == {"idempotency_request_in_progress"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in racing)
    GATES[name].set()
    done = await first
    replays = await asyncio.gather(*(post(client, auth, key, {"amount": "5", "label": name}) for _ in range(19)))
    assert done.status_code == 201 and {r.status_code for r in replays} == {201}
    assert {r.json()["id"] for r in replays} == {done.json()["id"]}
    assert CALLS[name] == 1


async def test_concurrent_first_requests_race_for_the_key_and_one_wins(client, auth) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    answers = await asyncio.gather(*(post(client, auth, key, {"amount": "5", "label": name}) for _ in range(20)))
    ok = [r for r in answers if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in answers)
    assert len({r.json()["id"] for r in ok}) == 1
    assert CALLS[name] == 1


async def test_a_crashed_requests_lock_expires_after_60_seconds(client, auth, runtime, clock) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    me = (await client.get("/api/users/me", headers=auth)).json()
    scope = store.IdempotencyScope(owner=f"user:{me['id']}", method="POST", route="/api/test/things", key=key,
                                   fingerprint=store.request_fingerprint(
                                       f'{{"amount": "3", "label": "{name}"}}'.encode()))
    dead = await store.claim(runtime.db, clock, scope)  # a request that died holding the key
    assert isinstance(dead, store.IdempotencyClaim)
    clock.advance(59)
    assert (await post(client, auth, key, {"amount": "3", "label": name})).status_code == 409
    clock.advance(2)
    taken = await post(client, auth, key, {"amount": "3", "label": name})
    assert taken.status_code == 201 and CALLS[name] == 1
    # the dead request's late completion is refused: it cannot act a second time
    async with runtime.db.transaction() as session:
        with pytest.raises(Exception) as refused:
            await dead.complete(session, status=201, body=b"{}", now=clock.now())
    assert getattr(refused.value, "code", None) == "idempotency_request_in_progress"
    replay = await post(client, auth, key, {"amount": "3", "label": name})
    assert replay.json() == taken.json()


async def test_keys_are_per_user(client, auth) -> None:  # type: ignore[no-untyped-def]
    _, tokens = await new_user(client)
    name, key = label(), str(uuid.uuid4())
    mine = await post(client, auth, key, {"amount": "1", "label": name})
    theirs = await post(client, bearer(tokens), key, {"amount": "1", "label": name})
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers and CALLS[name] == 2


async def test_a_failed_request_releases_its_key(client, auth) -> None:  # type: ignore[no-untyped-def]
    name, key = label(), str(uuid.uuid4())
    failed = await post(client, auth, key, {"amount": "1", "label": name, "fail": True})
    assert failed.status_code == 422 and failed.json()["code"] == "asked_to_fail"
    again = await post(client, auth, key, {"amount": "1", "label": name, "fail": True})
    assert again.status_code == 422 and CALLS[name] == 2  # not a stored failure: it ran again
    bad = await post(client, auth, key, {"amount": "not a number", "label": name})
    assert bad.status_code == 422 and CALLS[name] == 2  # refused before the route ran


async def test_without_a_key_every_request_acts(client, auth) -> None:  # type: ignore[no-untyped-def]
    name = label()
    for _ in range(2):
        assert (await post(client, auth, None, {"amount": "1", "label": name})).status_code == 201
    assert CALLS[name] == 2


async def test_malformed_keys_are_refused(client, auth) -> None:  # type: ignore[no-untyped-def]
    for key in ("", "x" * 256, "has space"):
        answer = await client.post("/api/test/things", json={"amount": "1"}, headers={**auth, "Idempotency-Key": key})
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_idempotency_key", key


async def test_records_are_kept_24_hours_then_pruned(client, auth, runtime, clock) -> None:  # type: ignore[no-untyped-def]
    created = await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": ["read", "trade"]},
                                headers=auth)
    auth = {"X-API-Key": created.json()["key"]}  # an access token would expire over the day
    name, key = label(), str(uuid.uuid4())
    first = await post(client, auth, key, {"amount": "1", "label": name})
    clock.advance(24 * 3600 - 1)
    assert await store.prune(runtime.db, clock) == 0
    assert (await post(client, auth, key, {"amount": "1", "label": name})).json() == first.json()
    clock.advance(2)
    assert await prune_idempotency_records(type("Ctx", (), {"runtime": runtime})(), {}) == {"deleted": 1}  # type: ignore[arg-type]
    fresh = await post(client, auth, key, {"amount": "1", "label": name})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"] and CALLS[name] == 2


def test_fingerprints_compare_json_by_value() -> None:
    assert store.request_fingerprint(b'{"a": 1, "b": [1, 2]}') == store.request_fingerprint(b'{"b":[1,2],"a":1}')
    assert store.request_fingerprint(b'{"a": 1.0}') != store.request_fingerprint(b'{"a": 1}')  # exact: 1.0 != 1
    assert store.request_fingerprint(b"not json") == store.request_fingerprint(b"not json")
    assert store.request_fingerprint(b"not json") != store.request_fingerprint(b"not json ")


async def test_a_retried_deposit_credits_once(client, auth) -> None:  # type: ignore[no-untyped-def]
    account = (await client.get("/api/trading/accounts", headers=auth)).json()["items"][0]
    url = f"/api/trading/accounts/{account['id']}/deposits"
    key = str(uuid.uuid4())
    answers = await asyncio.gather(*(client.post(url, json={"asset": "USDT", "amount": "0.1"},
                                                 headers={**auth, "Idempotency-Key": key}) for _ in range(5)))
    assert {a.status_code for a in answers} <= {201, 409} and any(a.status_code == 201 for a in answers)
    replay = await client.post(url, json={"asset": "USDT", "amount": "0.1"}, headers={**auth, "Idempotency-Key": key})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    detail = (await client.get(f"/api/trading/accounts/{account['id']}", headers=auth)).json()
    usdt = next(b for b in detail["balances"] if b["asset"] == "USDT")
    assert usdt["free"] == "10000.1"  # credited once
