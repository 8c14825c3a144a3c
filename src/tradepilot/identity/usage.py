"""Counters of what a user currently uses against their limits, registered by each domain.

Identity counts API keys; trading will register open orders, strategies running strategies,
and so on — the limits endpoint reports every registered counter.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.identity.models import ApiKey

UsageCounter = Callable[[AsyncSession, uuid.UUID], Awaitable[int]]
USAGE_COUNTERS: dict[str, UsageCounter] = {}


def usage_counter(limit_name: str) -> Callable[[UsageCounter], UsageCounter]:
    def register(func_: UsageCounter) -> UsageCounter:
        USAGE_COUNTERS[limit_name] = func_
        return func_

    return register


@usage_counter("api_keys")
async def count_api_keys(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Live keys: not revoked (expired keys still count until deleted, so the list stays honest)."""
    count = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
    )
    return int(count or 0)


async def current_usage(session: AsyncSession, user_id: uuid.UUID) -> dict[str, int]:
    return {name: await counter(session, user_id) for name, counter in USAGE_COUNTERS.items()}
