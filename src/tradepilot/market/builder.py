"""Live candles: 1m bars from trades, every higher timeframe from the 1m bars, and 24h figures.

Exact (``Decimal``) and feed-agnostic: bars close on *market time* — the timestamps of the
feed's own events — so a replayed day builds the same candles as the live one did. A minute
without trades gives a flat bar at the previous close with zero volume (as exchanges do);
a silence longer than ``MAX_FLAT_FILL`` minutes is left as a gap (the feed was down).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tradepilot.market.frame import from_ms, timeframe_ms, to_ms
from tradepilot.market.types import TIMEFRAMES, Bar, Trade

MINUTE = 60_000
DAY = 86_400_000
MAX_FLAT_FILL = 60
HIGHER = [tf for tf in TIMEFRAMES if tf != "1m"]


@dataclass
class _Agg:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def add(self, o: Decimal, h: Decimal, low: Decimal, c: Decimal, v: Decimal) -> None:
        del o
        self.high = max(self.high, h)
        self.low = min(self.low, low)
        self.close = c
        self.volume += v

    def bar(self, symbol: str, timeframe: str, closed: bool) -> Bar:
        return Bar(symbol=symbol, timeframe=timeframe, open_time=from_ms(self.start), open=self.open,
                   high=self.high, low=self.low, close=self.close, volume=self.volume, closed=closed)


@dataclass
class _SymbolCandles:
    minute: _Agg | None = None
    last_closed: int | None = None  # open time of the last closed 1m bar
    last_close: Decimal | None = None
    higher: dict[str, _Agg] = field(default_factory=dict)
    window: deque[_Agg] = field(default_factory=deque)  # closed 1m bars of the last 24 hours
    window_stats: tuple[Decimal, Decimal, Decimal] | None = None  # high, low, volume (cached)


@dataclass(frozen=True, slots=True)
class DayStats:
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal


class CandleBuilder:
    def __init__(self) -> None:
        self._symbols: dict[str, _SymbolCandles] = {}

    def _state(self, symbol: str) -> _SymbolCandles:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolCandles()
        return state

    def seed(self, symbol: str, bars: list[Bar]) -> None:
        """Start from stored closed 1m bars (the last day): the open higher-timeframe bars and
        the 24h window continue from them instead of starting empty."""
        state = self._state(symbol)
        for bar in sorted(bars, key=lambda b: b.open_time):
            start = to_ms(bar.open_time)
            if state.last_closed is not None and start <= state.last_closed:
                continue
            self._roll(symbol, state, _Agg(start, bar.open, bar.high, bar.low, bar.close, bar.volume))

    def on_trade(self, trade: Trade) -> list[Bar]:
        """Add a trade; returns the bars it closed (a trade in a new minute closes the last one)."""
        state = self._state(trade.symbol)
        start = to_ms(trade.ts) // MINUTE * MINUTE
        if (state.minute is not None and start < state.minute.start) or (
                state.last_closed is not None and start <= state.last_closed):
            return []  # late trade for a closed minute: candles are final once closed
        closed = self._close_until(trade.symbol, state, start)
        if state.minute is None:
            state.minute = _Agg(start, trade.price, trade.price, trade.price, trade.price, trade.quantity)
        else:
            state.minute.add(trade.price, trade.price, trade.price, trade.price, trade.quantity)
        return closed

    def advance(self, symbol: str, now: datetime) -> list[Bar]:
        """Close whatever ended before ``now`` (market time); returns the closed bars."""
        state = self._state(symbol)
        return self._close_until(symbol, state, to_ms(now) // MINUTE * MINUTE)

    def _close_until(self, symbol: str, state: _SymbolCandles, minute_start: int) -> list[Bar]:
        out: list[Bar] = []
        if state.minute is not None and state.minute.start < minute_start:
            out += self._roll(symbol, state, state.minute)
            state.minute = None
        if state.minute is None and state.last_closed is not None and state.last_close is not None:
            nxt, filled = state.last_closed + MINUTE, 0
            while nxt < minute_start and filled < MAX_FLAT_FILL:
                c = state.last_close
                out += self._roll(symbol, state, _Agg(nxt, c, c, c, c, Decimal(0)))
                nxt += MINUTE
                filled += 1
        return out

    def _roll(self, symbol: str, state: _SymbolCandles, bar: _Agg) -> list[Bar]:
        """A 1m bar closed: record it, fold it into the higher timeframes, close those it ends."""
        out = [bar.bar(symbol, "1m", True)]
        state.last_closed, state.last_close = bar.start, bar.close
        state.window.append(bar)
        horizon = bar.start + MINUTE - DAY
        while state.window and state.window[0].start < horizon:
            state.window.popleft()
        state.window_stats = None
        for tf in HIGHER:
            span = timeframe_ms(tf)
            period = bar.start // span * span
            agg = state.higher.get(tf)
            if agg is not None and agg.start != period:  # a period that never completed (a gap)
                out.append(agg.bar(symbol, tf, True))
                agg = None
            if agg is None:
                agg = state.higher[tf] = replace(bar, start=period)
            else:
                agg.add(bar.open, bar.high, bar.low, bar.close, bar.volume)
            if bar.start + MINUTE == period + span:
                out.append(agg.bar(symbol, tf, True))
                del state.higher[tf]
        return out

    def current(self, symbol: str) -> list[Bar]:
        """The bars still open (``closed=False``), one per timeframe that has any data."""
        state = self._symbols.get(symbol)
        if state is None:
            return []
        out = []
        minute = state.minute
        if minute is not None:
            out.append(minute.bar(symbol, "1m", False))
        for tf in HIGHER:
            span = timeframe_ms(tf)
            agg = state.higher.get(tf)
            if minute is not None:
                period = minute.start // span * span
                if agg is not None and agg.start == period:
                    merged = replace(agg)
                    merged.add(minute.open, minute.high, minute.low, minute.close, minute.volume)
                else:
                    merged = replace(minute, start=period)
            elif agg is not None:
                merged = agg
            else:
                continue
            out.append(merged.bar(symbol, tf, False))
        return out

    def day_stats(self, symbol: str) -> DayStats:
        """Open, high, low and volume over the last 24 hours (closed minutes + the open one)."""
        state = self._symbols.get(symbol)
        if state is None:
            return DayStats(None, None, None, Decimal(0))
        if state.window_stats is None and state.window:
            w = state.window
            state.window_stats = (max(b.high for b in w), min(b.low for b in w), sum((b.volume for b in w), Decimal(0)))
        high, low, volume = state.window_stats if state.window_stats else (None, None, Decimal(0))
        m = state.minute
        first = state.window[0] if state.window else m
        if m is not None:
            high = m.high if high is None else max(high, m.high)
            low = m.low if low is None else min(low, m.low)
            volume += m.volume
        return DayStats(first.open if first is not None else None, high, low, volume)
