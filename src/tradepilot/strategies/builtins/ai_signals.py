"""The "AI signals" strategy: trades signals automatically, through the same runtime and risk
checks as every other strategy.

* **In a live run** the runner hands it, before each bar, the user's signals for the run's
  symbols that were active during that bar (``use_signals``; see ``signals/feed.py``) — or,
  with ``signals: "model"``, the signal the trained direction model makes from the closed bars
  up to that bar, stored with the bar (``signals/autotrade.py``: the plan's auto-trading). When
  flat, it buys on the strongest unused buy signal at or above ``min_strength`` — an
  at-market signal at once, one with an entry price on the bar that reached it — and keeps
  the signal's stop and target; while long it sells on a sell signal at or above the
  threshold, when a bar closes at or beyond the stop or the target, or once the signal's
  horizon has passed. Each signal is used once (the ids are in the run's saved state).
* **In a backtest** there are no stored signals of the past to replay honestly, so it makes
  them the way the model would have: direction-model probabilities computed causally over
  the history (``signals/causal.py`` — each bar's value from a model fitted only on labels
  that had ended by then), a buy when P(up) gives a strength ``|2p − 1|`` at or above the
  threshold, a sell on the opposite, the backtest's ``stop_loss`` / ``take_profit`` fractions,
  and a time exit after ``horizon`` bars.

Exits are decided on a bar's close and act at the next open — the same rule live and in a
backtest (live runs place no protective orders yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tradepilot.ai.features import Candles
from tradepilot.strategies.base import EventStrategy, OrderRequest, StrategyContext, StrategyParams


@dataclass(frozen=True)
class LiveSignal:
    """A stored signal as the strategy sees it (floats: strategies compute in floats)."""

    id: str
    symbol: str
    side: str
    strength: float
    entry: float | None
    stop_loss: float | None
    take_profit: float | None
    horizon: int
    source: str = "model"


class AiSignalsParams(StrategyParams):
    min_strength: float = Field(0.2, ge=0, le=1, description="trade signals at least this strong (0..1)")
    size: float = Field(0.5, gt=0, le=1, description="fraction of free cash each entry spends")
    signals: Literal["stored", "model"] = Field(
        "stored", description="live: 'stored' trades your stored signals; 'model' asks the trained direction "
                              "model at each closed bar, stores its signal and trades it")
    sources: list[Literal["model", "strategy", "user", "webhook"]] | None = Field(
        None, min_length=1, description="live, stored signals: trade only signals of these sources (default: all)")
    horizon: int = Field(24, ge=1, le=500, description="bars the model forecasts (live with signals 'model': a "
                                                       "trained horizon) and, in a backtest, a position is held")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="backtest: exit this fraction below the entry")
    take_profit: float | None = Field(None, gt=0, description="backtest: exit this fraction above the entry")
    min_train: int = Field(500, ge=200, le=100_000, description="backtest: bars before the first model fit")
    refit_every: int = Field(250, ge=10, le=100_000, description="backtest: bars between model refits")


class AiSignals(EventStrategy):
    name = "ai_signals"
    title = "AI signals"
    description = ("Trades your active signals (model, strategy, webhook or your own) — or, with signals 'model', "
                   "the direction model's own signal at each closed bar — above a strength threshold, with their "
                   "stop and target; backtests on causally computed model predictions.")
    Params = AiSignalsParams
    wants_signals = True  # the live runner hands it the user's signals before each bar

    @property
    def model_signals(self) -> bool:
        """Live: the runner asks the direction model for this bar's signals (``signals/autotrade.py``)."""
        return self.params.signals == "model"  # type: ignore[attr-defined,no-any-return]

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._live: list[LiveSignal] | None = None  # None: no feed (a backtest): the model's own signals
        self._probabilities: dict[str, np.ndarray] = {}
        self._used: list[str] = []
        self._open: dict[str, dict[str, Any]] = {}  # symbol → stop, target, until (bar ms), signal id

    # -- the feed -------------------------------------------------------------------------------

    def use_signals(self, signals: list[LiveSignal]) -> None:
        self._live = list(signals)

    def on_start(self, ctx: StrategyContext) -> None:
        if self._live is not None:
            return
        from tradepilot.signals.causal import causal_probabilities

        p: AiSignalsParams = self.params  # type: ignore[assignment]
        for symbol in ctx.symbols:
            bars = ctx.bars(symbol)
            candles = Candles(bars.time / 1000.0, bars.open, bars.high, bars.low, bars.close, bars.volume)
            self._probabilities[symbol] = causal_probabilities(candles, p.horizon, min_train=p.min_train,
                                                               refit_every=p.refit_every)

    # -- deciding -------------------------------------------------------------------------------

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        for symbol in ctx.symbols:
            if ctx.has_pending_market_order(symbol):
                continue
            bars = ctx.bars(symbol)
            now_ms, close = int(bars.time[i]), float(bars.close[i])
            held = ctx.position(symbol) > 0
            candidates = self._candidates(symbol, bars, i)
            if held:
                if self._should_exit(symbol, now_ms, close, candidates):
                    ctx.submit(OrderRequest(symbol, "sell", tag="exit"))
                    self._open.pop(symbol, None)
            else:
                self._open.pop(symbol, None)
                buys = [c for c in candidates if c.side == "buy"]
                if buys:
                    self._enter(ctx, symbol, max(buys, key=lambda c: c.strength), now_ms, close, bars)

    def _candidates(self, symbol: str, bars: Any, i: int) -> list[LiveSignal]:
        p: AiSignalsParams = self.params  # type: ignore[assignment]
        if self._live is None:
            probs = self._probabilities.get(symbol)
            prob = float(probs[i]) if probs is not None and i < probs.size else math.nan
            if math.isnan(prob) or abs(2 * prob - 1) < p.min_strength:
                return []
            close = float(bars.close[i])
            buy = prob > 0.5
            return [LiveSignal(f"model-{int(bars.time[i])}", symbol, "buy" if buy else "sell", abs(2 * prob - 1), None,
                               close * (1 - p.stop_loss) if p.stop_loss else None,
                               close * (1 + p.take_profit) if p.take_profit else None, p.horizon)]
        low, high = float(bars.low[i]), float(bars.high[i])
        return [s for s in self._live if s.symbol == symbol and s.strength >= p.min_strength and s.id not in self._used
                and (p.sources is None or s.source in p.sources) and (s.entry is None or low <= s.entry <= high)]

    def _enter(self, ctx: StrategyContext, symbol: str, signal: LiveSignal, now_ms: int, close: float,
               bars: Any) -> None:
        if signal.stop_loss is not None and close <= signal.stop_loss:
            return  # the idea is already stopped out
        if signal.take_profit is not None and close >= signal.take_profit:
            return  # and its target already reached: nothing left to gain
        size: float = self.params.size  # type: ignore[attr-defined]
        ctx.submit(OrderRequest(symbol, "buy", fraction=size, tag="entry"))
        step = int(bars.time[1] - bars.time[0]) if len(bars) > 1 else 0
        self._used = (self._used + [signal.id])[-1000:]
        self._open[symbol] = {"stop": signal.stop_loss, "target": signal.take_profit,
                              "until": now_ms + signal.horizon * step, "signal": signal.id}

    def _should_exit(self, symbol: str, now_ms: int, close: float, candidates: list[LiveSignal]) -> bool:
        plan = self._open.get(symbol)
        if any(c.side == "sell" for c in candidates):
            for c in candidates:
                if c.side == "sell":
                    self._used = (self._used + [c.id])[-1000:]
            return True
        if plan is None:
            return False
        if plan["stop"] is not None and close <= plan["stop"]:
            return True
        if plan["target"] is not None and close >= plan["target"]:
            return True
        return bool(plan["until"]) and now_ms >= plan["until"]

    # -- a live run's saved state ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"used": list(self._used), "open": dict(self._open)}

    def restore(self, state: dict[str, Any]) -> None:
        self._used = list(state.get("used") or [])
        self._open = dict(state.get("open") or {})
