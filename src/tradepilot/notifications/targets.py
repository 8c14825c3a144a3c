"""Where a user is reached on each targeted channel: saving, reading and removing destinations.

A destination (a Telegram chat id, a webhook URL, a Web Push subscription) is stored
encrypted; its SHA-256 makes it unique per channel, so one chat or one browser is never
linked to two users at once (linking it again moves it).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.secrets_box import secret_box
from tradepilot.notifications import constants as c
from tradepilot.notifications.channel_models import NotificationTarget

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

SINGLE_TARGET = frozenset({c.TELEGRAM, c.DISCORD, c.SLACK})  # one per user; Web Push: one per device


@dataclass(frozen=True, slots=True)
class Target:
    """A decrypted destination."""

    id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    address: dict[str, Any]
    label: str | None
    trading_commands: bool


def address_hash(channel: str, address: dict[str, Any]) -> str:
    key = address.get("chat_id") or address.get("url") or (address.get("subscription") or {}).get("endpoint")
    return hashlib.sha256(f"{channel}\n{key}".encode()).hexdigest()


def decrypt(runtime: Runtime, row: NotificationTarget) -> Target:
    address = json.loads(secret_box(runtime).decrypt(row.address_encrypted))
    return Target(row.id, row.user_id, row.channel, address, row.label, row.trading_commands)


async def save_target(runtime: Runtime, session: AsyncSession, *, user_id: uuid.UUID, channel: str,
                      address: dict[str, Any], label: str | None, now: datetime) -> NotificationTarget:
    """Store a destination; replaces the user's previous one on single-target channels, and takes
    the same destination away from whoever had it before."""
    digest = address_hash(channel, address)
    await session.execute(delete(NotificationTarget).where(NotificationTarget.channel == channel,
                                                           NotificationTarget.address_hash == digest))
    if channel in SINGLE_TARGET:
        await session.execute(delete(NotificationTarget).where(NotificationTarget.user_id == user_id,
                                                               NotificationTarget.channel == channel))
    row = NotificationTarget(user_id=user_id, channel=channel, address_hash=digest, label=label,
                             address_encrypted=secret_box(runtime).encrypt(json.dumps(address)),
                             trading_commands=False, created_at=now)
    session.add(row)
    await session.flush()
    return row


async def targets_of(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID,
                     channel: str | None = None) -> list[Target]:
    query = select(NotificationTarget).where(NotificationTarget.user_id == user_id)
    if channel is not None:
        query = query.where(NotificationTarget.channel == channel)
    rows = (await session.scalars(query.order_by(NotificationTarget.created_at, NotificationTarget.id))).all()
    return [decrypt(runtime, row) for row in rows]


async def has_target(session: AsyncSession, user_id: uuid.UUID, channel: str) -> bool:
    found = await session.scalar(select(NotificationTarget.id).where(NotificationTarget.user_id == user_id,
                                                                     NotificationTarget.channel == channel).limit(1))
    return found is not None


async def telegram_target_of_chat(runtime: Runtime, session: AsyncSession, chat_id: int) -> Target | None:
    """The linked target of a Telegram chat, or None for an unlinked chat."""
    row = await session.scalar(select(NotificationTarget).where(
        NotificationTarget.channel == c.TELEGRAM,
        NotificationTarget.address_hash == address_hash(c.TELEGRAM, {"chat_id": str(chat_id)})))
    return None if row is None else decrypt(runtime, row)


async def remove_target(session: AsyncSession, target_id: uuid.UUID) -> None:
    await session.execute(delete(NotificationTarget).where(NotificationTarget.id == target_id))


def describe(target: Target) -> str:
    """What the user sees of a destination: enough to recognise it, not enough to use it."""
    if target.channel == c.TELEGRAM:
        return f"chat {target.address.get('chat_id')}"
    url = target.address.get("url") or (target.address.get("subscription") or {}).get("endpoint") or ""
    head, _, tail = url.partition("://")
    host = tail.split("/", 1)[0]
    return f"{head}://{host}/…{url[-4:]}" if url else ""
