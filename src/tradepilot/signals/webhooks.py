"""Inbound signal webhooks: one secret URL per user, ``…/webhook/<key>_<secret>``.

The ``key`` finds the row; only an HMAC of the secret is stored (``core.crypto.token_hmac``
keyed by the server secret), compared in constant time. An unknown key and a wrong secret
answer the same 404, so the URL space reveals nothing. Rotating replaces key and secret at
once (the old URL stops working at the commit); revoking deletes the row.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.crypto import constant_time_equals, random_token, token_hmac
from tradepilot.core.errors import NotFound
from tradepilot.signals import constants as k
from tradepilot.signals.models import SignalWebhook

PATH = "/api/signals/webhook"
KEY_BYTES = 8  # 16 hex characters: finds the row, is not the secret
# an HMAC of a random string: a failed lookup costs the same HMAC and comparison as a wrong secret
_DECOY = "0" * 64


def webhook_not_found() -> NotFound:
    return NotFound("No such webhook.", code="webhook_not_found")


def _hash(secret_key: str, secret: str) -> str:
    return token_hmac(secret_key, secret, purpose=k.WEBHOOK_PURPOSE)


async def webhook_of(session: AsyncSession, user_id: uuid.UUID) -> SignalWebhook | None:
    return await session.scalar(select(SignalWebhook).where(SignalWebhook.user_id == user_id))


async def issue(session: AsyncSession, secret_key: str, user_id: uuid.UUID, now: datetime) -> tuple[SignalWebhook, str]:
    """Create the user's webhook, or rotate it (new key and secret); the secret, shown once."""
    secret = random_token(32)
    key = secrets.token_hex(KEY_BYTES)
    row = await webhook_of(session, user_id)
    if row is None:
        row = SignalWebhook(user_id=user_id, key=key, secret_hash=_hash(secret_key, secret), created_at=now,
                            rotated_at=now, last_used_at=None)
        session.add(row)
    else:
        row.key, row.secret_hash, row.rotated_at = key, _hash(secret_key, secret), now
    await session.flush()
    return row, secret


async def revoke(session: AsyncSession, user_id: uuid.UUID) -> bool:
    result = await session.execute(delete(SignalWebhook).where(SignalWebhook.user_id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def split_token(token: str) -> tuple[str, str] | None:
    key, sep, secret = token.partition("_")
    if not sep or len(key) != 2 * KEY_BYTES or not secret:
        return None
    return key, secret


async def verify(session: AsyncSession, secret_key: str, token: str) -> SignalWebhook:
    """The webhook the token opens; 404 ``webhook_not_found`` for a bad key or secret alike."""
    parts = split_token(token)
    key, secret = parts if parts is not None else ("", token)
    row = await session.scalar(select(SignalWebhook).where(SignalWebhook.key == key)) if parts else None
    expected = row.secret_hash if row is not None else _DECOY
    if not constant_time_equals(_hash(secret_key, secret), expected) or row is None:
        raise webhook_not_found()
    return row


def public_path(row: SignalWebhook) -> str:
    return f"{PATH}/{row.key}_…"
