"""Signals from a model or a strategy, for ``POST /api/ai/generate-signals``.

* **model** — the direction model of (symbol, timeframe, horizon) forecasts from the latest
  closed bars: P(up) ≥ 0.5 is a buy, below a sell; the strength is ``|2·P(up) − 1|`` (0: a
  coin toss, 1: certain); the stop and target are the forecast's 10 % and 90 % return
  quantiles applied to the last close. The reason states the probabilities, and the
  details carry the model's walk-forward out-of-sample scores beside its baselines' — a
  model that does not beat them says so there (``beats_baselines``).
* **strategy** — a signal strategy of the catalog decides on the latest bars exactly as in a
  backtest or a live run: an entry on the last closed bar is a buy, an exit a sell (with the
  strategy's stop and target fractions); neither: no signal for that symbol. A rule either
  fires or not, so the strength is 1.

Entries are at the market (the next bar's open), valid for ``expires_in_bars`` bars. An
AI-signals run trading the model asks :func:`from_model` at each of its bars, with the bars up
to that bar only (``autotrade.py``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradepilot.ai.features import WARMUP
from tradepilot.ai.market_candles import bars_of
from tradepilot.ai.predictions import closed_bars, latest_forecast
from tradepilot.core.errors import Unprocessable
from tradepilot.market.types import TIMEFRAMES
from tradepilot.signals.schemas import GenerateSignals, SignalCreate
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import SignalStrategy
from tradepilot.strategies.catalog import build_strategy, get_strategy
from tradepilot.strategies.validation import validated_params

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime

STRATEGY_BARS = 1000  # the window a strategy decides on (its indicators' warm-up fits well inside)


@dataclass
class Proposal:
    """A signal to store, or why a symbol has none."""

    symbol: str
    body: SignalCreate | None = None
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


def _price(value: float, tick: Decimal) -> Decimal:
    return (Decimal(repr(value)) / tick).to_integral_value() * tick


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


async def from_model(runtime: Runtime, market: MarketService, body: GenerateSignals, symbol: str,
                     until: datetime | None = None) -> Proposal:
    """``until``: forecast from the bars opening before it (a strategy run's bar), not the newest."""
    instrument = market.instrument(symbol)
    latest = await latest_forecast(runtime, market, symbol, body.timeframe, body.horizon,
                                   until)  # 503 model_not_ready
    model, found, forecast = latest.model, latest.bars, latest.forecast
    if forecast is None:
        return Proposal(symbol, skipped=f"insufficient_data: {len(found)} closed bars, {WARMUP + 1} needed")
    p = forecast.probability_up
    strength = round(abs(2 * p - 1), 6)
    if strength < body.min_strength:
        return Proposal(symbol, skipped=f"below min_strength: P(up) {p:.3f} is strength {strength:.3f}")
    last = float(found[-1].close)
    expected, low, high = (math.expm1(v) for v in (forecast.expected_return, *forecast.interval))
    buy = p >= 0.5
    stop, target = (low, high) if buy else (high, low)
    tick = instrument.tick_size
    stop_price = _price(last * (1 + stop), tick) if (stop < 0 if buy else stop > 0) else None
    target_price = _price(last * (1 + target), tick) if (target > 0 if buy else target < 0) else None
    walk = model.meta.get("scores", {})
    as_of = found[-1].open_time
    reason = (f"direction model: P(up) {p:.3f} over {body.horizon} bar(s) of {body.timeframe} from the bar of "
              f"{as_of.isoformat()}; expected return {_pct(expected)} (10–90 %: {_pct(low)} .. {_pct(high)})")
    details = {"model": "direction-lightgbm", "as_of": as_of, "last_close": last, "probability_up": round(p, 6),
               "expected_return": round(expected, 6), "interval": {"low": round(low, 6), "high": round(high, 6)},
               "scores": walk.get("model"), "baselines": {n: walk.get(n) for n in ("linear", "always_up",
                                                                                    "last_direction")},
               "beats_baselines": walk.get("beats_baselines"), "test_bars": walk.get("test_bars"),
               "trained_at": model.meta.get("trained_at"), "training_window": model.meta.get("window")}
    return Proposal(symbol, SignalCreate(symbol=symbol, side="buy" if buy else "sell", strength=strength,
                                         stop_loss=stop_price, take_profit=target_price, timeframe=body.timeframe,
                                         horizon=body.horizon, reason=reason), details)


def _decide(strategy: SignalStrategy, bars: Bars) -> tuple[bool, bool, Any]:
    signals = strategy.signals(bars)
    return bool(signals.entries[-1]), bool(signals.exits[-1]), signals


async def from_strategy(market: MarketService, body: GenerateSignals, symbol: str,
                        params: dict[str, Any]) -> Proposal:
    instrument = market.instrument(symbol)
    assert body.strategy is not None
    strategy = build_strategy(body.strategy, params)
    if not isinstance(strategy, SignalStrategy):
        raise Unprocessable(f"{body.strategy} decides by events (orders as it goes), not by entry and exit "
                            "signals; choose a signal strategy.", code="strategy_not_signal_based")
    found = await closed_bars(market, symbol, body.timeframe, STRATEGY_BARS)
    if not found:
        return Proposal(symbol, skipped=f"insufficient_data: no closed {body.timeframe} bars")
    try:
        entry, exit_, signals = await asyncio.to_thread(_decide, strategy, bars_of(symbol, found))
    except Exception as exc:  # noqa: BLE001  (an operator's plugin may raise anything: that symbol has no signal)
        return Proposal(symbol, skipped=f"strategy_failed: {type(exc).__name__}: {exc}"[:500])
    as_of = found[-1].open_time
    if not entry and not exit_:
        return Proposal(symbol, skipped=f"no signal: neither entry nor exit on the bar of {as_of.isoformat()}")
    last = float(found[-1].close)
    tick = instrument.tick_size
    buy = entry
    stop = _price(last * (1 - signals.stop_loss), tick) if buy and signals.stop_loss else None
    target = _price(last * (1 + signals.take_profit), tick) if buy and signals.take_profit else None
    reason = (f"{strategy.title} ({body.strategy}): {'entry' if buy else 'exit'} rule true on the close of the "
              f"bar of {as_of.isoformat()} (close {last:g})")
    details = {"strategy": body.strategy, "params": params, "as_of": as_of, "last_close": last,
               "rule": "entry" if buy else "exit"}
    return Proposal(symbol, SignalCreate(symbol=symbol, side="buy" if buy else "sell", strength=1.0,
                                         stop_loss=stop, take_profit=target, timeframe=body.timeframe,
                                         horizon=body.horizon, reason=reason), details)


async def propose(runtime: Runtime, market: MarketService, body: GenerateSignals) -> list[Proposal]:
    """One proposal per symbol (unknown symbols 404 before any work)."""
    symbols = list(dict.fromkeys(market.instrument(s).symbol for s in body.symbols))
    params = {}
    if body.strategy is not None:
        params = validated_params(body.strategy, body.params)  # 422 unknown_strategy first
        if get_strategy(body.strategy).kind != "signals":
            raise Unprocessable(f"{body.strategy} decides by events (orders as it goes), not by entry and exit "
                                "signals; choose a signal strategy.", code="strategy_not_signal_based")
    out = []
    for symbol in symbols:
        if body.source == "model":
            out.append(await from_model(runtime, market, body, symbol))
        else:
            out.append(await from_strategy(market, body, symbol, params))
    return out


def expiry_of(body: GenerateSignals, now: Any) -> Any:
    return now + timedelta(seconds=TIMEFRAMES[body.timeframe] * body.expires_in_bars)
