"""SignalService: create, list, cancel signals, and record what the market did to them.

Every change emits an event on the user's ``signals`` topic in the same transaction
(``signal.created``, ``signal.status_changed``, ``signal.outcome``), so WebSocket clients see
it and the follower (``tracker.py``) hears of new signals.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import Conflict, NotFound, Unprocessable
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit, jsonable
from tradepilot.core.pagination import time_keyset_page
from tradepilot.market.service import normalize_symbol
from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals import constants as k
from tradepilot.signals.constants import SignalStatus
from tradepilot.signals.lifecycle import Evaluation
from tradepilot.signals.models import Signal
from tradepilot.signals.schemas import SignalCreate

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

MAX_OPEN_SIGNALS = 1000  # active per user: a runaway webhook sender cannot fill the table
MAX_EXPIRY_BARS = 1000  # bounds the bars the follower reads per signal (with the horizon's 500)


def signal_not_found() -> NotFound:
    return NotFound("Signal not found.", code="signal_not_found")


def summary(signal: Signal) -> dict[str, Any]:
    """The event payload: enough for a client to update its view without a read."""
    return jsonable({"id": signal.id, "symbol": signal.symbol, "side": signal.side, "strength": signal.strength,
                     "entry": signal.entry, "stop_loss": signal.stop_loss, "take_profit": signal.take_profit,
                     "source": signal.source, "status": signal.status, "triggered_at": signal.triggered_at,
                     "trigger_price": signal.trigger_price, "outcome": signal.outcome,
                     "horizon_return": signal.horizon_return})


class SignalService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def known_symbol(self, symbol: str) -> str:
        """The listed symbol (404 ``unknown_symbol`` otherwise)."""
        market = self.runtime.services.get("market")
        if market is None:
            return normalize_symbol(symbol)
        return market.instrument(symbol).symbol  # type: ignore[no-any-return]

    async def create(self, session: AsyncSession, user_id: uuid.UUID, body: SignalCreate, *, source: str,
                     details: dict[str, Any] | None = None, signal_id: uuid.UUID | None = None) -> Signal:
        """A new active signal (409 ``signal_limit_reached`` past ``MAX_OPEN_SIGNALS``).
        ``signal_id``: a caller's stable id (a strategy run's bar), so a replay finds it."""
        symbol = self.known_symbol(body.symbol)
        now = self.runtime.clock.now()
        expires_at = body.expires_at or now + timedelta(seconds=TIMEFRAMES[body.timeframe] * body.horizon)
        if expires_at.tzinfo is None:
            raise Unprocessable("expires_at needs a time zone (RFC 3339, e.g. …Z).", code="invalid_time")
        if expires_at <= now:
            raise Unprocessable("expires_at is in the past.", code="signal_expired")
        longest = timedelta(seconds=TIMEFRAMES[body.timeframe] * MAX_EXPIRY_BARS)
        if expires_at > now + longest:
            raise Unprocessable(f"expires_at may be at most {MAX_EXPIRY_BARS} {body.timeframe} bars ahead.",
                                code="expiry_too_far")
        open_count = await session.scalar(select(func.count()).select_from(Signal).where(
            Signal.user_id == user_id, Signal.status == SignalStatus.ACTIVE))
        if int(open_count or 0) >= MAX_OPEN_SIGNALS:
            raise Conflict(f"You have {MAX_OPEN_SIGNALS} active signals; cancel some first.",
                           code="signal_limit_reached", extra={"limit": MAX_OPEN_SIGNALS})
        signal = Signal(user_id=user_id, symbol=symbol, side=body.side, strength=float(body.strength),
                        entry=body.entry, stop_loss=body.stop_loss, take_profit=body.take_profit,
                        timeframe=body.timeframe, horizon=body.horizon, source=source, reason=body.reason,
                        details=jsonable(details or {}), status=SignalStatus.ACTIVE, expires_at=expires_at,
                        created_at=now, updated_at=now)
        if signal_id is not None:
            signal.id = signal_id
        session.add(signal)
        await session.flush()
        await self._event(session, signal, k.SIGNAL_CREATED)
        return signal

    async def cancel(self, session: AsyncSession, signal: Signal) -> Signal:
        """active → cancelled; any other status is the market's doing (409 ``signal_not_active``)."""
        if signal.status == SignalStatus.CANCELLED:
            return signal
        if signal.status != SignalStatus.ACTIVE:
            raise Conflict(f"The signal is {signal.status}; only an active signal can be cancelled.",
                           code="signal_not_active")
        signal.status = SignalStatus.CANCELLED
        signal.updated_at = self.runtime.clock.now()
        await session.flush()
        await self._event(session, signal, k.SIGNAL_CHANGED)
        return signal

    async def record(self, session: AsyncSession, signal: Signal, found: Evaluation) -> bool:
        """Write what the follower found; True if anything changed (each change is an event)."""
        if signal.status not in (SignalStatus.ACTIVE, SignalStatus.TRIGGERED):
            return False
        status_changed = found.status != signal.status
        outcome_changed = (found.outcome, found.evaluated_at) != (signal.outcome, signal.evaluated_at)
        if not status_changed and not outcome_changed:
            return False
        if status_changed:
            signal.status = found.status
            signal.triggered_at, signal.trigger_price = found.triggered_at, found.trigger_price
        if outcome_changed and found.outcome is not None:
            signal.outcome, signal.outcome_at, signal.exit_price = found.outcome, found.outcome_at, found.exit_price
            signal.horizon_return, signal.evaluated_at = found.horizon_return, found.evaluated_at
        signal.updated_at = self.runtime.clock.now()
        await session.flush()
        if status_changed:
            await self._event(session, signal, k.SIGNAL_CHANGED)
        if outcome_changed and found.outcome is not None:
            await self._event(session, signal, k.SIGNAL_OUTCOME)
        return True

    @staticmethod
    async def _event(session: AsyncSession, signal: Signal, type_: str) -> None:
        await emit(session, topic=Topics.user(signal.user_id, k.TOPIC_KIND), type=type_, user_id=signal.user_id,
                   payload={"signal": summary(signal)})

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _filtered(user_id: uuid.UUID, *, status: str | None = None, source: str | None = None,
                  symbol: str | None = None) -> Any:
        query = select(Signal).where(Signal.user_id == user_id)
        if status is not None:
            query = query.where(Signal.status == status)
        if source is not None:
            query = query.where(Signal.source == source)
        if symbol is not None:
            query = query.where(Signal.symbol == symbol)
        return query

    async def page(self, session: AsyncSession, user_id: uuid.UUID, *, limit: int, cursor: str | None,
                   status: str | None = None, source: str | None = None, symbol: str | None = None,
                   expires_after: datetime | None = None) -> tuple[list[Signal], str | None]:
        """Newest first; ``expires_after``: only those still valid then."""
        query = self._filtered(user_id, status=status, source=source, symbol=symbol)
        if expires_after is not None:
            query = query.where(Signal.expires_at > expires_after)
        return await time_keyset_page(session, query, Signal.created_at, Signal.id, limit=limit, cursor=cursor)

    async def matching(self, session: AsyncSession, user_id: uuid.UUID, *, source: str | None,
                       symbol: str | None) -> list[Signal]:
        """Every signal of the user in the filter (for the performance figures)."""
        return list(await session.scalars(self._filtered(user_id, source=source, symbol=symbol)))


def signals_of(runtime: Runtime) -> SignalService:
    service = runtime.services.get(k.SERVICE_KEY)
    if service is None:
        service = runtime.services[k.SERVICE_KEY] = SignalService(runtime)
    return service  # type: ignore[no-any-return]


