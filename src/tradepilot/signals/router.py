"""HTTP edge of signals: /api/signals (docs/signals.md).

Reads need the ``read`` scope, changes the ``trade`` scope (an active signal may make the
AI-signals strategy trade). The static paths (``active``, ``performance``, ``webhook``) come
before ``/{signal_id}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, status

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Page
from tradepilot.signals.constants import SignalStatus
from tradepilot.signals.deps import OwnedSignal, ReadUser, Signals, TradeUser
from tradepilot.signals.models import Signal
from tradepilot.signals.performance_query import performance_of
from tradepilot.signals.schemas import PerformanceOut, SignalCreate, SignalOut, StatusUpdate

router = api_router(prefix="/api/signals", tags=["signals"])
_NOT_FOUND = {404: {"description": "No such signal, or not yours (signal_not_found)"}}
Source = Literal["model", "strategy", "user", "webhook"]
Status = Literal["active", "triggered", "expired", "cancelled"]


def signal_out(row: Signal) -> SignalOut:
    return SignalOut.model_validate(row)


@router.get("", response_model=Page[SignalOut], summary="Your signals")
async def list_signals(
    principal: ReadUser, db: DbSession, signals: Signals,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    source: Source | None = None,
    symbol: Annotated[str | None, Query(min_length=3, max_length=32)] = None,
) -> Page[SignalOut]:
    """Newest first."""
    chosen = signals.known_symbol(symbol) if symbol else None
    rows, next_cursor = await signals.page(db, principal.id, limit=limit, cursor=cursor, status=status_,
                                           source=source, symbol=chosen)
    return Page[SignalOut](items=[signal_out(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SignalOut, summary="A signal of your own",
             responses={404: {"description": "unknown_symbol"},
                        409: {"description": "Too many active signals (signal_limit_reached)"},
                        422: {"description": "validation_error, signal_expired"}})
async def create_signal(body: SignalCreate, principal: TradeUser, db: DbSession, signals: Signals) -> SignalOut:
    row = await signals.create(db, principal.id, body, source="user")
    out = signal_out(row)
    await db.commit()
    return out


@router.get("/active", response_model=Page[SignalOut], summary="Your active signals")
async def active_signals(
    principal: ReadUser, db: DbSession, signals: Signals, runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    symbol: Annotated[str | None, Query(min_length=3, max_length=32)] = None,
) -> Page[SignalOut]:
    """Waiting for their entry and not past their expiry (the follower may not have marked
    them yet), newest first."""
    chosen = signals.known_symbol(symbol) if symbol else None
    rows, next_cursor = await signals.page(db, principal.id, limit=limit, cursor=cursor, status=SignalStatus.ACTIVE,
                                           symbol=chosen, expires_after=runtime.clock.now())
    return Page[SignalOut](items=[signal_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/performance", response_model=PerformanceOut, summary="How your signals did, beside chance")
async def signal_performance(
    principal: ReadUser, db: DbSession, signals: Signals, runtime: RuntimeDep,
    source: Source | None = None,
    symbol: Annotated[str | None, Query(min_length=3, max_length=32)] = None,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1, description="the random baseline's seed")] = 0,
    samples: Annotated[int, Query(ge=1, le=200, description="random entries per scored signal")] = 20,
) -> PerformanceOut:
    """Hit rate, mean and median return at the horizon of the signals whose horizon has passed,
    overall and by source, beside a random-entry baseline on the same symbols and horizons."""
    chosen = signals.known_symbol(symbol) if symbol else None
    rows = await signals.matching(db, principal.id, source=source, symbol=chosen)
    found = await performance_of(runtime, rows, seed=seed, samples=samples)
    return PerformanceOut.model_validate(found)


@router.get("/{signal_id}", response_model=SignalOut, summary="A signal", responses=_NOT_FOUND)
async def get_signal(signal: OwnedSignal, principal: ReadUser) -> SignalOut:
    return signal_out(signal)


@router.put("/{signal_id}/status", response_model=SignalOut, summary="Cancel a signal",
            responses={**_NOT_FOUND, 409: {"description": "Triggered or expired already (signal_not_active)"}})
async def set_status(body: StatusUpdate, signal: OwnedSignal, principal: TradeUser, db: DbSession,
                     signals: Signals) -> SignalOut:
    """Active → cancelled. Triggered and expired are the market's doing, not yours."""
    row = await signals.cancel(db, signal)
    out = signal_out(row)
    await db.commit()
    return out


