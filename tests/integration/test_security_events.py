"""GET /api/auth/security-events: a user's own log, paginated and filtered; admins see all."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from tests.helpers import bearer, new_user
from tradepilot.identity.models import User
from tradepilot.identity.security_events import SecurityEventKind

EVENTS = "/api/auth/security-events"


async def make_admin(runtime, user_id: str) -> None:  # type: ignore[no-untyped-def]
    """Promote in the database, with 2FA on (admin endpoints require it), and drop cached credentials."""
    async with runtime.db.session() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(user_id))
                              .values(role="admin", totp_enabled_at=runtime.clock.now()))
        await session.commit()
    await runtime.services["identity"].announce_user_changed(uuid.UUID(user_id))


async def all_pages(client: httpx.AsyncClient, tokens: dict, **params: object) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get(EVENTS, headers=bearer(tokens), params=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_users_see_only_their_own_events_newest_first(client: httpx.AsyncClient) -> None:
    alice, alice_tokens = await new_user(client)
    bob, bob_tokens = await new_user(client)
    for _ in range(2):
        wrong = await client.post("/api/auth/login", json={"email": alice["email"], "password": "not the password"})
        assert wrong.status_code == 401
    resp = await client.get(EVENTS, headers=bearer(alice_tokens))
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert {e["user_id"] for e in items} == {alice["id"]}
    kinds = [e["kind"] for e in items]
    assert kinds.count(SecurityEventKind.LOGIN_FAILED) == 2
    assert kinds[-1] == SecurityEventKind.REGISTERED and SecurityEventKind.LOGIN_SUCCEEDED in kinds
    stamps = [e["created_at"] for e in items]
    assert stamps == sorted(stamps, reverse=True)
    assert items[0]["ip"] == "203.0.113.7" and items[0]["details"] == {"factor": "password"}
    bobs = await client.get(EVENTS, headers=bearer(bob_tokens))
    assert {e["user_id"] for e in bobs.json()["items"]} == {bob["id"]}
    assert SecurityEventKind.LOGIN_FAILED not in [e["kind"] for e in bobs.json()["items"]]


async def test_pages_and_kind_filter(client: httpx.AsyncClient) -> None:
    profile, tokens = await new_user(client)
    for _ in range(4):
        await client.post("/api/auth/login", json={"email": profile["email"], "password": "not the password"})
    everything = await all_pages(client, tokens, limit=50)
    paged = await all_pages(client, tokens, limit=2)
    assert [e["id"] for e in paged] == [e["id"] for e in everything] and len(everything) == 6
    first = await client.get(EVENTS, headers=bearer(tokens), params={"limit": 2})
    assert len(first.json()["items"]) == 2 and first.json()["next_cursor"]
    failed = await all_pages(client, tokens, kind=SecurityEventKind.LOGIN_FAILED, limit=3)
    assert len(failed) == 4 and {e["kind"] for e in failed} == {SecurityEventKind.LOGIN_FAILED}
    unknown = await client.get(EVENTS, headers=bearer(tokens), params={"kind": "login.nonsense"})
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_event_kind"
    bad = await client.get(EVENTS, headers=bearer(tokens), params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    assert (await client.get(EVENTS, headers=bearer(tokens), params={"limit": 0})).status_code == 422
    assert (await client.get(EVENTS)).status_code == 401


async def test_only_admins_see_other_accounts(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    alice, alice_tokens = await new_user(client)
    bob, bob_tokens = await new_user(client)
    refused = await client.get(EVENTS, headers=bearer(bob_tokens), params={"user_id": alice["id"]})
    assert refused.status_code == 403 and refused.json()["code"] == "admin_required"
    own = await client.get(EVENTS, headers=bearer(bob_tokens), params={"user_id": bob["id"]})
    assert own.status_code == 200 and {e["user_id"] for e in own.json()["items"]} == {bob["id"]}

    await make_admin(runtime, alice["id"])
    everyone = await all_pages(client, alice_tokens, limit=200)
    assert {alice["id"], bob["id"]} <= {e["user_id"] for e in everyone}
    just_bob = await all_pages(client, alice_tokens, user_id=bob["id"])
    assert just_bob and {e["user_id"] for e in just_bob} == {bob["id"]}
    bob_logins = await all_pages(client, alice_tokens, user_id=bob["id"], kind=SecurityEventKind.LOGIN_SUCCEEDED)
    assert len(bob_logins) == 1
