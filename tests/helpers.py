"""Small HTTP helpers for API tests."""

from __future__ import annotations

import uuid

import httpx

PASSWORD = "a sturdy test passphrase"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


async def register(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> dict:
    email = email or unique_email()
    resp = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    resp = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def new_user(client: httpx.AsyncClient) -> tuple[dict, dict]:
    """Register and log in a fresh user; returns (profile, tokens)."""
    profile = await register(client)
    tokens = await login(client, profile["email"])
    return profile, tokens


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
