"""Gathers a user's scored signals and their symbols' bars for :func:`performance.performance`.

The bars are the follower's: the candle store overlaid with the live bars not flushed yet
(``MarketService.read_candles``), closed ones only, from the symbol's first scored signal on —
so the baseline draws from the very bars the signals were scored on.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from tradepilot.core.errors import ServiceUnavailable
from tradepilot.market.frame import to_ms
from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals.constants import SignalStatus
from tradepilot.signals.models import Signal
from tradepilot.signals.performance import Scored, Series, performance

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


def scored(rows: list[Signal]) -> list[Scored]:
    return [Scored(source=r.source, symbol=r.symbol, timeframe=r.timeframe, horizon=r.horizon, side=r.side,
                   created_ms=to_ms(r.created_at), horizon_return=r.horizon_return, outcome=r.outcome)
            for r in rows if r.horizon_return is not None]


async def performance_of(runtime: Runtime, rows: list[Signal], *, seed: int, samples: int) -> dict[str, Any]:
    market = runtime.services.get("market")
    if market is None:
        raise ServiceUnavailable("The market service is not running here.", code="market_unavailable")
    now = runtime.clock.now()
    first: dict[tuple[str, str], datetime] = {}
    for r in rows:
        if r.horizon_return is not None:
            key = (r.symbol, r.timeframe)
            first[key] = min(first.get(key, r.created_at), r.created_at)
    series: dict[tuple[str, str], Series] = {}
    for (symbol, timeframe), since in first.items():
        step = timedelta(seconds=TIMEFRAMES[timeframe])
        bars = [b for b in await market.read_candles(symbol, timeframe, start=since - step, end=now)
                if b.closed and b.open_time + step <= now]
        series[(symbol, timeframe)] = Series(np.array([to_ms(b.open_time) for b in bars], dtype=np.int64),
                                             np.array([float(b.open) for b in bars]),
                                             np.array([float(b.close) for b in bars]))
    found = await asyncio.to_thread(performance, scored(rows), lambda s, t: series[(s, t)], seed=seed,
                                    samples=samples)
    counts = Counter(r.status for r in rows)
    found["statuses"] = {name: counts.get(name, 0) for name in SignalStatus.ALL}
    found["awaiting_horizon"] = sum(1 for r in rows if r.status == SignalStatus.TRIGGERED and r.horizon_return is None)
    return found
