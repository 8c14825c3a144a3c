"""The platform trading halt: an administrator's switch that refuses new orders on every account.

One row (``id = 1``) holds the current state; reading it is a primary-key lookup inside the
order's own transaction, so every replica refuses orders from the moment the halt commits —
no cache to invalidate. Cancels, reads and deposits keep working: a halt stops risk from
growing, it does not trap anyone in a position. Each change is an admin action in the
acting administrator's security log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.clock import Clock
from tradepilot.core.db import Base
from tradepilot.core.errors import ServiceUnavailable
from tradepilot.identity.security_events import SecurityEventKind, record_security_event

SINGLETON_ID = 1


class TradingHaltState(Base):
    __tablename__ = "trading_halt"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    halted: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_by: Mapped[uuid.UUID | None]
    changed_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class Halt:
    halted: bool
    reason: str | None
    changed_by: uuid.UUID | None
    changed_at: datetime | None


NOT_HALTED = Halt(halted=False, reason=None, changed_by=None, changed_at=None)


# built once (every order reads it): the singleton row, re-read from the database
_HALT_ROW = (select(TradingHaltState).where(TradingHaltState.id == SINGLETON_ID)
             .execution_options(populate_existing=True))


async def current_halt(session: AsyncSession) -> Halt:
    row = await session.scalar(_HALT_ROW)
    if row is None:
        return NOT_HALTED
    return Halt(halted=row.halted, reason=row.reason, changed_by=row.changed_by, changed_at=row.changed_at)


async def set_halt(session: AsyncSession, *, halted: bool, reason: str | None, admin_id: uuid.UUID, clock: Clock,
                   ip: str | None) -> Halt:
    """Halt or resume trading (in the caller's transaction), and audit it."""
    row = await session.get(TradingHaltState, SINGLETON_ID, with_for_update=True)
    if row is None:
        row = TradingHaltState(id=SINGLETON_ID)
        session.add(row)
    row.halted, row.reason = halted, (reason if halted else None)
    row.changed_by, row.changed_at = admin_id, clock.now()
    record_security_event(session, clock=clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=admin_id, ip=ip,
                          details={"action": "trading_halted" if halted else "trading_resumed",
                                   "admin_id": str(admin_id), "reason": reason})
    return Halt(halted=row.halted, reason=row.reason, changed_by=row.changed_by, changed_at=row.changed_at)


async def ensure_not_halted(session: AsyncSession) -> None:
    """Refuse a new order while the platform is halted (503 ``trading_halted``, the reason in ``detail``)."""
    halt = await current_halt(session)
    if halt.halted:
        raise ServiceUnavailable(f"Trading is halted by the platform's administrators: {halt.reason}",
                                 code="trading_halted", extra={"reason": halt.reason})
