"""FastAPI dependencies of signals: the service, scopes and ``OwnedSignal``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.identity.deps import CurrentUser, require_scope
from tradepilot.identity.principal import AuthUser
from tradepilot.signals.models import Signal
from tradepilot.signals.service import SignalService, signal_not_found, signals_of


def get_signals(runtime: RuntimeDep) -> SignalService:
    return signals_of(runtime)


Signals = Annotated[SignalService, Depends(get_signals)]
ReadUser = Annotated[AuthUser, Depends(require_scope("read"))]
TradeUser = Annotated[AuthUser, Depends(require_scope("trade"))]  # creating a signal may make a strategy trade


@ownership_dependency
async def owned_signal(signal_id: uuid.UUID, principal: CurrentUser, db: DbSession) -> Signal:
    """The caller's signal; 404 ``signal_not_found`` alike for a missing id and another user's."""
    row = await db.get(Signal, signal_id)
    if row is None or row.user_id != principal.id:
        raise signal_not_found()
    return row


OwnedSignal = Annotated[Signal, Depends(owned_signal)]
