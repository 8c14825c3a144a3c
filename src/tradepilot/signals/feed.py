"""The user's signals handed to a strategy that trades them (the AI-signals strategy).

Before each bar of a live run the runner calls :func:`feed_signals`: the run owner's signals
for the run's symbols and timeframe that were active during the bar — created by its close,
not expired at its open, not cancelled, and not triggered before it (a signal the follower
marked triggered on this very bar is still this bar's to act on). A run trading the model's
own signals gets those of the bar instead (``autotrade.py``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals.autotrade import MadeSignal, model_signals
from tradepilot.signals.constants import SignalStatus
from tradepilot.signals.models import Signal
from tradepilot.strategies.builtins.ai_signals import LiveSignal

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def signals_during(runtime: Runtime, user_id: uuid.UUID, symbols: list[str], timeframe: str,
                         bar_open: datetime) -> list[LiveSignal]:
    bar_close = bar_open + timedelta(seconds=TIMEFRAMES[timeframe])
    async with runtime.db.read() as session:
        rows = list(await session.scalars(select(Signal).where(
            Signal.user_id == user_id, Signal.symbol.in_(symbols), Signal.timeframe == timeframe,
            Signal.status.in_((SignalStatus.ACTIVE, SignalStatus.TRIGGERED)),
            Signal.created_at <= bar_close, Signal.expires_at > bar_open,
            or_(Signal.triggered_at.is_(None), Signal.triggered_at >= bar_open)).order_by(Signal.created_at)))
    return [LiveSignal(id=str(r.id), symbol=r.symbol, side=r.side, strength=r.strength, entry=_float(r.entry),
                       stop_loss=_float(r.stop_loss), take_profit=_float(r.take_profit), horizon=r.horizon,
                       source=r.source)
            for r in rows]


async def feed_signals(runtime: Runtime, strategy: Any, run: Any, bar_open: datetime) -> list[MadeSignal]:
    """Hand ``strategy`` the run owner's signals of this bar, if it trades signals; one that
    trades the model's own (``signals: "model"``) gets the model's signals of the bar, which
    are returned for the runner to store with the bar (``signals/autotrade.py``)."""
    if not getattr(strategy, "wants_signals", False):
        return []
    if getattr(strategy, "model_signals", False):
        made = await model_signals(runtime, run, bar_open, strategy.params)
        strategy.use_signals([m.live() for m in made])
        return made
    strategy.use_signals(await signals_during(runtime, run.user_id, list(run.symbols), run.timeframe, bar_open))
    return []
