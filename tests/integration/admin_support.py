"""Helpers of the admin, deletion and mass-assignment tests."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from tests.helpers import bearer, new_user
from tradepilot.email.delivery import OUTBOX_DIRNAME
from tradepilot.identity.lifecycle import ACCOUNT_STOP_HOOKS, AccountStop
from tradepilot.identity.models import User
from tradepilot.runtime import Runtime

ADMIN_PREFIX = "/api/admin/"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


async def set_account(runtime: Runtime, user_id: str | uuid.UUID, **values: object) -> None:
    """Change the user row directly, then tell the caches (as an admin action would)."""
    uid = uuid.UUID(str(user_id))
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == uid).values(**values))
    await runtime.services["identity"].announce_user_changed(uid)


async def make_admin(client: httpx.AsyncClient, runtime: Runtime) -> tuple[dict, dict]:
    """A logged-in admin with 2FA marked on (set in the database after the login, so the login
    itself needs no code); returns (profile, tokens)."""
    profile, tokens = await new_user(client)
    await set_account(runtime, profile["id"], role="admin", totp_enabled_at=runtime.clock.now())
    return profile, tokens


async def create_key(client: httpx.AsyncClient, tokens: dict, scopes: list[str]) -> dict:
    resp = await client.post("/api/users/me/api-keys", json={"name": "bot", "scopes": scopes}, headers=bearer(tokens))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def client_from(app: FastAPI, ip: str) -> httpx.AsyncClient:
    """A client of ``app`` from its own address (the sign-in rate limit is per address)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://testserver")


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the app's OpenAPI document."""
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in routes_of(app) if p.startswith(ADMIN_PREFIX)]


def fill_path(path: str, **ids: str) -> str:
    """Substitute path parameters: a known id by name, else a random UUID."""
    import re

    return re.sub(r"{(\w+)(?::[^}]*)?}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


async def sent_mails(runtime: Runtime, to: str) -> list[EmailMessage]:
    """Deliver every queued mail (to the outbox folder: the tests have no SMTP), then read the
    ones sent to ``to``."""
    await runtime.services["jobs"].drain()
    outbox = Path(runtime.settings.data_dir) / OUTBOX_DIRNAME
    mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in outbox.glob("*.eml")]
    return [m for m in mails if to in str(m["To"])]  # type: ignore[misc]


@contextmanager
def recording_stop_hook() -> Iterator[list[AccountStop]]:
    """Register a stop hook that records its calls (as trading or strategies will register theirs)."""
    calls: list[AccountStop] = []

    async def hook(stop: AccountStop) -> None:
        calls.append(stop)

    ACCOUNT_STOP_HOOKS["tests.recorder"] = hook
    try:
        yield calls
    finally:
        ACCOUNT_STOP_HOOKS.pop("tests.recorder", None)
