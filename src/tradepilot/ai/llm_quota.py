"""The plan's AI calls per UTC day (``ai_calls_per_day``), taken atomically.

One statement takes a call: ``INSERT .. ON CONFLICT DO UPDATE SET calls = calls + 1 WHERE
calls < limit RETURNING calls``. No row back means the day's calls are used up. On
PostgreSQL the conditional update row-locks the counter, so of two concurrent requests for
the last call exactly one gets it; on SQLite writes are serialised. The caller commits
right away, so the counter is never held locked while the LLM thinks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.llm_models import AICallDay
from tradepilot.core.errors import RateLimited
from tradepilot.identity.account_service import settings_of
from tradepilot.identity.models import User
from tradepilot.identity.plans import effective_limits


@dataclass(frozen=True)
class Quota:
    used: int
    limit: int
    resets_at: datetime  # the next UTC midnight


def next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)


async def daily_limit(session: AsyncSession, user_id: uuid.UUID) -> int:
    """min(the user's own limit, the plan's), read now: an admin's plan change applies at once."""
    user = await session.get(User, user_id)
    assert user is not None  # authenticated just now
    return effective_limits(user.plan, dict(settings_of(user).limits)).ai_calls_per_day


async def take_call(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> Quota:
    """Count one AI call today (in the caller's transaction), or 429 ``ai_quota_exceeded``
    with ``Retry-After`` up to the next UTC midnight."""
    limit = await daily_limit(session, user_id)
    day = now.astimezone(UTC).date()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(AICallDay).values(user_id=user_id, day=day, calls=1)
            .on_conflict_do_update(index_elements=[AICallDay.user_id, AICallDay.day],
                                   set_={"calls": AICallDay.calls + 1}, where=AICallDay.calls < limit)
            .returning(AICallDay.calls))
    used = (await session.execute(stmt)).scalar_one_or_none() if limit > 0 else None
    resets = next_midnight(now)
    if used is None:
        wait = max(1, int((resets - now).total_seconds()))
        raise RateLimited(f"Your plan allows {limit} AI calls per UTC day; they are used up until {resets.isoformat()}.",
                          code="ai_quota_exceeded", headers={"Retry-After": str(wait)},
                          extra={"limit": limit, "resets_at": resets.isoformat().replace("+00:00", "Z")})
    return Quota(used=used, limit=limit, resets_at=resets)


async def calls_on(session: AsyncSession, user_id: uuid.UUID, day: date) -> int:
    return (await session.scalar(select(AICallDay.calls).where(AICallDay.user_id == user_id,
                                                               AICallDay.day == day))) or 0
