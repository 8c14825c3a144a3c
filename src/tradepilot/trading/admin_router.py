"""Administrators' trading switches: ``/api/admin/trading/halt`` (platform-wide halt of new orders)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import Depends
from pydantic import Field

from tradepilot.core.deps import ClientIP, DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Schema
from tradepilot.identity.deps import AdminUser, get_admin
from tradepilot.trading.halt import Halt, current_halt, set_halt

router = api_router(prefix="/api/admin/trading", tags=["admin"], dependencies=[Depends(get_admin)])


class HaltRequest(Schema):
    reason: str = Field(min_length=1, max_length=500, description="Shown to users whose orders are refused")


class HaltOut(Schema):
    halted: bool
    reason: str | None
    changed_by: uuid.UUID | None
    changed_at: datetime | None


def halt_out(halt: Halt) -> HaltOut:
    return HaltOut(halted=halt.halted, reason=halt.reason, changed_by=halt.changed_by, changed_at=halt.changed_at)


@router.get("/halt", response_model=HaltOut, summary="Is trading halted?")
async def get_halt(admin: AdminUser, db: DbSession) -> HaltOut:
    return halt_out(await current_halt(db))


@router.put("/halt", response_model=HaltOut, summary="Halt new orders on every account")
async def halt_trading(body: HaltRequest, admin: AdminUser, db: DbSession, runtime: RuntimeDep,
                       ip: ClientIP) -> HaltOut:
    """From the commit on, every replica answers new orders with 503 `trading_halted` (the
    reason included). Cancels, reads and balance changes keep working."""
    halt = await set_halt(db, halted=True, reason=body.reason, admin_id=admin.id, clock=runtime.clock, ip=ip)
    await db.commit()
    return halt_out(halt)


@router.delete("/halt", response_model=HaltOut, summary="Lift the halt")
async def resume_trading(admin: AdminUser, db: DbSession, runtime: RuntimeDep, ip: ClientIP) -> HaltOut:
    halt = await set_halt(db, halted=False, reason=None, admin_id=admin.id, clock=runtime.clock, ip=ip)
    await db.commit()
    return halt_out(halt)
