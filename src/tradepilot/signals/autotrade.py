"""The plan's auto-trading: an AI-signals run (``signals: "model"``) asks the direction model at
each closed bar and trades what it says.

At the bar, before the strategy decides, :func:`model_signals` forecasts each of the run's
symbols from the closed bars up to that bar — never a later one, so a run catching up on
missed bars sees each as it was — through the same path as ``POST /api/ai/generate-signals``
(``signals/generate.py`` → ``ai/predictions.py``). A forecast at or above the run's
``min_strength`` becomes a model signal, at the market, valid for one bar. The runner stores it
in the bar's own fenced transaction (:func:`store`), with the orders it led to: a crash before
the commit leaves neither, and the replay makes the same signal again. Its id is derived from
the run, the symbol and the bar, so even a replay that got past the fence stores it once.

No trained model (or a file refused by the registry): the bar gets no signal, with a warning in
the log; starting such a run is refused (:func:`require_models`, 503 ``model_not_ready``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.ai.predictions import trained_model
from tradepilot.core.errors import ServiceUnavailable, TradePilotError
from tradepilot.market.frame import to_ms
from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals.constants import MODEL
from tradepilot.signals.generate import from_model
from tradepilot.signals.models import Signal
from tradepilot.signals.schemas import GenerateSignals, SignalCreate
from tradepilot.signals.service import signals_of
from tradepilot.strategies.builtins.ai_signals import LiveSignal
from tradepilot.strategies.catalog import build_strategy

if TYPE_CHECKING:
    from datetime import datetime

    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.signals")

_IDS = uuid.UUID("6d3f1b1e-5a41-4c53-9f3e-a1c0b2f6e7d9")  # the namespace of run-made signal ids


@dataclass(frozen=True)
class MadeSignal:
    """A model signal of a run's bar, to be stored with the bar."""

    id: uuid.UUID
    body: SignalCreate
    details: dict[str, Any]

    def live(self) -> LiveSignal:
        b = self.body
        return LiveSignal(id=str(self.id), symbol=b.symbol, side=b.side, strength=float(b.strength), entry=None,
                          stop_loss=None if b.stop_loss is None else float(b.stop_loss),
                          take_profit=None if b.take_profit is None else float(b.take_profit),
                          horizon=b.horizon, source=MODEL)


def signal_id(run_id: uuid.UUID, symbol: str, bar_open: datetime) -> uuid.UUID:
    return uuid.uuid5(_IDS, f"{run_id}/{symbol}/{to_ms(bar_open)}")


async def model_signals(runtime: Runtime, run: Any, bar_open: datetime, params: Any) -> list[MadeSignal]:
    """The model's signals of the bar opening at ``bar_open``, one per symbol at most."""
    market = runtime.services["market"]
    step = timedelta(seconds=TIMEFRAMES[run.timeframe])
    ask = GenerateSignals(source=MODEL, symbols=list(run.symbols), timeframe=run.timeframe, horizon=params.horizon,
                          min_strength=params.min_strength)
    made = []
    for symbol in run.symbols:
        try:
            proposal = await from_model(runtime, market, ask, symbol, until=bar_open + step)
        except ServiceUnavailable as exc:
            logger.warning("no model signal for a strategy run's bar",
                           extra={"run_id": str(run.id), "symbol": symbol, "code": exc.code})
            continue
        as_of = proposal.details.get("as_of")
        if proposal.body is None or as_of is None or to_ms(as_of) != to_ms(bar_open):
            continue  # too weak, too few bars, or the bar is not in the store
        proposal.body.expires_at = runtime.clock.now() + step  # at the market, on the next bar
        details = {**proposal.details, "strategy_run_id": str(run.id)}
        made.append(MadeSignal(signal_id(run.id, symbol, bar_open), proposal.body, details))
    return made


async def store(runtime: Runtime, session: AsyncSession, user_id: uuid.UUID, made: list[MadeSignal]) -> None:
    """The bar's model signals, in the bar's transaction; one stored already (a replay) is kept."""
    service = signals_of(runtime)
    for signal in made:
        if await session.get(Signal, signal.id) is not None:
            continue
        try:
            async with session.begin_nested():
                await service.create(session, user_id, signal.body, source=MODEL, details=signal.details,
                                     signal_id=signal.id)
        except TradePilotError as exc:  # e.g. signal_limit_reached: the trade stands, the record is missing
            logger.warning("a strategy run's model signal was not stored",
                           extra={"signal_id": str(signal.id), "code": exc.code})


def trades_model(strategy: str, params: dict[str, Any]) -> bool:
    """Whether a run of ``strategy`` would ask the model at each bar (``model_signals``)."""
    try:
        return bool(getattr(build_strategy(strategy, params), "model_signals", False))
    except Exception:  # noqa: BLE001  (a plugin's constructor may raise anything: the runner fails the run)
        return False


async def require_models(runtime: Runtime, symbols: list[str], timeframe: str, horizon: int) -> None:
    """503 ``model_not_ready`` unless a direction model is trained for every symbol."""
    market = runtime.services["market"]
    for symbol in symbols:
        await trained_model(runtime, market, market.instrument(symbol).symbol, timeframe, horizon)
