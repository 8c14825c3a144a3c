"""The simulated market's history: what to back-fill at start, and writing it to the store.

First start (no stored bars): the history ends at the symbol's reference price at the
current minute, so the live market can start at once. The last day is simulated first and
returned (it seeds the 24-hour ticker and the open higher-timeframe candles); the rest is
simulated and written in the background. The older part is simulated *backwards* from the
state the last day started in: a stationary Gaussian AR(1) read in reverse is the same
process, so the volatility path joins the last day without a seam.

Later starts: the history continues forward from the last stored close up to now (at most
``market_backfill_days`` back; anything older stays a gap, which gap detection reports).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from tradepilot.market.feeds.sim_model import (
    MINUTE_MS,
    ModelState,
    ReturnModel,
    SymbolSpec,
    bars_from_returns,
    history_rng,
)
from tradepilot.market.frame import BarFrame, from_ms, to_ms
from tradepilot.market.resample import derived_timeframes, floor_ms, resample
from tradepilot.market.store import CandleStore, partition_bounds

RECENT_MINUTES = 1440
CHUNK_MINUTES = 131_072  # simulated at a time, so a stopping process is not kept waiting


class Stopped(Exception):
    """The process is stopping: the back-fill ends early (it resumes at the next start)."""


@dataclass
class HistoryPlan:
    recent: dict[str, BarFrame]  # up to the last day of 1m bars per symbol, ending at ``now``
    live_price: dict[str, Decimal]  # where the live market starts
    state: ModelState  # volatility state at the end of the history (all symbols, in spec order)
    write: Callable[[threading.Event], int]  # writes the rest (call in a thread); bars written
    pending_minutes: int  # minutes of 1m bars ``write`` will store


@dataclass
class _Segment:
    spec: SymbolSpec
    frames: list[Callable[[threading.Event], BarFrame]]  # produced lazily (interruptible), in time order


def plan_history(specs: list[SymbolSpec], store: CandleStore, *, seed: int, now_ms: int,
                 days: float, fence: int | None = None) -> HistoryPlan:
    """Decide and simulate the history (CPU: run in a thread)."""
    now_m = floor_ms(now_ms, "1m")
    want_start = now_m - int(round(days * 1440)) * MINUTE_MS
    lasts = {s.symbol: store.last_bar(s.symbol, "1m") for s in specs}
    resume = [s for s in specs if lasts[s.symbol] is not None]
    fresh = [s for s in specs if lasts[s.symbol] is None]
    recent: dict[str, BarFrame] = {}
    live_price: dict[str, Decimal] = {}
    own: dict[str, np.ndarray] = {}
    common: np.ndarray | None = None
    segments: list[_Segment] = []

    if resume:
        starts = {s.symbol: max(to_ms(lasts[s.symbol].open_time) + MINUTE_MS, want_start) for s in resume}  # type: ignore[union-attr]
        first = min(starts.values())
        n = max(0, (now_m - first) // MINUTE_MS)
        model = ReturnModel(resume)
        rng = history_rng(seed, first // MINUTE_MS, 1)
        state = model.initial_state(rng)
        returns, sigma, end = model.simulate(max(n, 1), rng, state)
        common = end.common
        for i, spec in enumerate(resume):
            last_close = lasts[spec.symbol].close  # type: ignore[union-attr]
            offset = (starts[spec.symbol] - first) // MINUTE_MS
            own[spec.symbol] = end.own[i]
            if offset >= n:  # nothing to fill
                frame = BarFrame.empty()
                live_price[spec.symbol] = last_close
            else:
                frame = bars_from_returns(spec, starts[spec.symbol], returns[i, offset:n], sigma[i, offset:n], rng,
                                          start_price=last_close)
                live_price[spec.symbol] = frame.decimal("close", len(frame) - 1)
                segments.append(_Segment(spec, [lambda stop, f=frame: f]))
            older = store.read(spec.symbol, "1m", from_ms(now_m - RECENT_MINUTES * MINUTE_MS),
                               from_ms(starts[spec.symbol]))
            recent[spec.symbol] = BarFrame.concat([older, frame.between(now_m - RECENT_MINUTES * MINUTE_MS, None)])

    if fresh:
        n = max(0, (now_m - want_start) // MINUTE_MS)
        n_recent = min(n, RECENT_MINUTES)
        model = ReturnModel(fresh)
        rng = history_rng(seed, now_m // MINUTE_MS, 2)
        start_state = model.initial_state(rng)
        returns, sigma, end = model.simulate(max(n_recent, 1), rng, start_state)
        older: _OlderHistory | None = None
        common = end.common
        for i, spec in enumerate(fresh):
            own[spec.symbol] = end.own[i]
            live_price[spec.symbol] = spec.price
            if n_recent == 0:
                recent[spec.symbol] = BarFrame.empty()
                continue
            last_day = bars_from_returns(spec, now_m - n_recent * MINUTE_MS, returns[i, :n_recent],
                                         sigma[i, :n_recent], rng, end_price=spec.price)
            recent[spec.symbol] = last_day
            frames: list[Callable[[threading.Event], BarFrame]] = []
            if n > n_recent:
                if older is None:
                    older = _OlderHistory(model, seed, now_m, n - n_recent, start_state)
                joins_at = last_day.decimal("open", 0)
                frames.append(lambda stop, o=older, i=i, p=joins_at: o.frame(i, p, stop))
            frames.append(lambda stop, f=last_day: f)
            segments.append(_Segment(spec, frames))

    assert common is not None or not specs
    state = ModelState(common if common is not None else np.zeros(3),
                       np.array([own[s.symbol] for s in specs]) if specs else np.zeros((0, 3)))
    pending = sum(len(recent[s.spec.symbol]) for s in segments)  # lower bound, before older parts
    if fresh and (now_m - want_start) // MINUTE_MS > RECENT_MINUTES:
        pending += len(fresh) * ((now_m - want_start) // MINUTE_MS - RECENT_MINUTES)

    def write(stop: threading.Event) -> int:
        return _write_segments(store, segments, stop, fence)

    return HistoryPlan(recent, live_price, state, write, pending)


class _OlderHistory:
    """The part before the last day, for all fresh symbols: simulated backwards from the state
    the last day began in, once for all symbols (their factor structure), used one at a time."""

    def __init__(self, model: ReturnModel, seed: int, now_m: int, n: int, joins: ModelState) -> None:
        self.model, self.seed, self.now_m, self.n, self.joins = model, seed, now_m, n, joins
        self._paths: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def frame(self, index: int, end_price: Decimal, stop: threading.Event) -> BarFrame:
        with self._lock:
            if self._paths is None:
                rng = history_rng(self.seed, self.now_m // MINUTE_MS, 3)
                parts, state = [], self.joins
                for done in range(0, self.n, CHUNK_MINUTES):
                    if stop.is_set():
                        raise Stopped()
                    returns, sigma, state = self.model.simulate(min(CHUNK_MINUTES, self.n - done), rng, state)
                    parts.append((returns, sigma))
                returns = np.concatenate([p[0] for p in parts], axis=1)
                sigma = np.concatenate([p[1] for p in parts], axis=1)
                self._paths = (returns[:, ::-1], sigma[:, ::-1])
            returns, sigma = self._paths
        rng = history_rng(self.seed, self.now_m // MINUTE_MS, 4 + index)
        start = self.now_m - (self.n + RECENT_MINUTES) * MINUTE_MS
        return bars_from_returns(self.model.specs[index], start, np.ascontiguousarray(returns[index]),
                                 np.ascontiguousarray(sigma[index]), rng, end_price=end_price)


def _write_segments(store: CandleStore, segments: list[_Segment], stop: threading.Event,
                    fence: int | None) -> int:
    written = 0
    for segment in segments:
        symbol = segment.spec.symbol
        frame = BarFrame.concat([make(stop) for make in segment.frames])
        if not len(frame):
            continue
        written += _write_chunked(store, symbol, "1m", frame, stop, fence)
        seg_start = int(frame.open_time[0])
        head = store.read(symbol, "1m", from_ms(floor_ms(seg_start, "1d")), from_ms(seg_start))
        combined = BarFrame.concat([head, frame])
        for tf in derived_timeframes("1m"):
            bars = resample(combined.between(floor_ms(seg_start, tf), None), tf)
            _write_chunked(store, symbol, tf, bars, stop, fence)
    return written


def _write_chunked(store: CandleStore, symbol: str, timeframe: str, frame: BarFrame,
                   stop: threading.Event, fence: int | None) -> int:
    """Write partition by partition, so a stopping process does not wait for the whole history."""
    i = 0
    while i < len(frame):
        if stop.is_set():
            raise Stopped()
        _, end, _ = partition_bounds(int(frame.open_time[i]), timeframe)
        j = int(np.searchsorted(frame.open_time, end, side="left"))
        store.write(symbol, timeframe, frame.take(slice(i, j)), fence=fence)
        i = j
    return len(frame)
