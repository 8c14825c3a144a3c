"""Market analysis as facts: trend, regime, momentum, volatility, levels and patterns.

``analyse`` turns one symbol's candles into ``MarketFacts`` — numbers a user can check on a
chart — and ``summarise`` writes the readable summary from those facts with a template (an
LLM, when the operator configures one, writes it from the same facts; the facts are always
returned). Nothing here is a constant: every field is measured on the candles given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import talib

from tradepilot.ai.candlesticks import candlestick_patterns
from tradepilot.ai.chart_patterns import detect_chart_patterns
from tradepilot.ai.features import Candles
from tradepilot.ai.pivots import trailing_scale, zigzag
from tradepilot.ai.regime import RegimeModel

MIN_BARS = 200  # below this the indicators and the regime have too little to stand on
RECENT_PATTERN_BARS = 150
LEVEL_REVERSAL = 4.0  # sigmas: swings whose turning points make support and resistance
LEVEL_TOLERANCE = 2.0  # sigmas: turning points this close are one level
SECONDS_PER_YEAR = 365.25 * 86400


class InsufficientHistory(ValueError):
    pass


@dataclass
class Level:
    price: float
    touches: int
    last_touch: int  # bar index


@dataclass
class MarketFacts:
    bars: int
    last_price: float
    trend: dict[str, Any]
    regime: dict[str, Any] | None
    momentum: dict[str, Any]
    volatility: dict[str, Any]
    support: list[Level]
    resistance: list[Level]
    patterns: list[dict[str, Any]]
    candlesticks: list[dict[str, Any]]
    extras: dict[str, Any] = field(default_factory=dict)  # sentiment, prediction: added by the caller

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last(values: np.ndarray) -> float:
    return float(values[-1])


def _trend(close: np.ndarray, high: np.ndarray, low: np.ndarray) -> dict[str, Any]:
    sma20, sma50 = talib.SMA(close, 20), talib.SMA(close, 50)
    adx = _last(talib.ADX(high, low, close, timeperiod=14))
    slope = (math.log(sma50[-1]) - math.log(sma50[-11])) / 10 * 100  # % per bar over the last 10 bars
    if close[-1] > sma50[-1] and sma20[-1] > sma50[-1] and slope > 0:
        direction = "up"
    elif close[-1] < sma50[-1] and sma20[-1] < sma50[-1] and slope < 0:
        direction = "down"
    else:
        direction = "sideways"
    strength = "strong" if adx >= 25 else "weak" if adx < 20 else "moderate"
    return {"direction": direction, "strength": strength, "adx_14": round(adx, 2), "sma_20": _last(sma20),
            "sma_50": _last(sma50), "sma_50_slope_pct_per_bar": round(slope, 4)}


def _momentum(close: np.ndarray) -> dict[str, Any]:
    rsi = _last(talib.RSI(close, 14))
    hist = _last(talib.MACD(close)[2])
    roc = _last(talib.ROC(close, 10))
    state = "overbought" if rsi >= 70 else "oversold" if rsi <= 30 else "bullish" if hist > 0 else "bearish"
    return {"rsi_14": round(rsi, 2), "macd_histogram": hist, "roc_10_pct": round(roc, 3), "state": state}


def _volatility(candles: Candles) -> dict[str, Any]:
    close, high, low = candles.close, candles.high, candles.low
    atr_pct = talib.ATR(high, low, close, 14) / close * 100
    history = atr_pct[np.isfinite(atr_pct)]
    percentile = float(np.mean(history <= atr_pct[-1]) * 100)
    returns = np.diff(np.log(close[-101:]))
    bar_seconds = float(np.median(np.diff(candles.time[-101:]))) if len(candles) > 1 else 86400.0
    annualised = float(np.std(returns) * math.sqrt(SECONDS_PER_YEAR / bar_seconds) * 100)
    regime = "high" if percentile >= 80 else "low" if percentile <= 20 else "normal"
    return {"atr_14_pct": round(float(atr_pct[-1]), 4), "atr_percentile": round(percentile, 1),
            "annualised_pct": round(annualised, 2), "regime": regime}


def _levels(candles: Candles) -> tuple[list[Level], list[Level]]:
    """Support below and resistance above the last close: clusters of swing turning points,
    nearest first, the most-touched kept."""
    log_high, log_low, log_close = (np.log(a) for a in (candles.high, candles.low, candles.close))
    scale = trailing_scale(log_close)
    pivots = zigzag(log_high, log_low, LEVEL_REVERSAL * scale)
    if not pivots:
        return [], []
    sigma = float(np.nanmedian(scale))
    ordered = sorted(pivots, key=lambda p: p.level)
    clusters: list[list[Any]] = [[ordered[0]]]
    for pivot in ordered[1:]:
        if pivot.level - clusters[-1][0].level <= LEVEL_TOLERANCE * sigma:  # from the cluster's lowest: no chains
            clusters[-1].append(pivot)
        else:
            clusters.append([pivot])
    levels = [Level(math.exp(float(np.mean([p.level for p in c]))), len(c), max(p.index for p in c))
              for c in clusters]
    last = float(candles.close[-1])
    support = sorted((lv for lv in levels if lv.price < last), key=lambda lv: -lv.price)[:3]
    resistance = sorted((lv for lv in levels if lv.price > last), key=lambda lv: lv.price)[:3]
    return support, resistance


def analyse(candles: Candles, regime_model: RegimeModel | None = None) -> MarketFacts:
    if len(candles) < MIN_BARS:
        raise InsufficientHistory(f"{len(candles)} bars, at least {MIN_BARS} needed")
    close, high, low = (np.ascontiguousarray(a, dtype=np.float64) for a in (candles.close, candles.high, candles.low))
    reading = regime_model.classify(np.log(close)) if regime_model is not None else None
    support, resistance = _levels(candles)
    since = len(candles) - RECENT_PATTERN_BARS
    patterns = [{"kind": p.kind, "direction": p.direction, "start": int(candles.time[p.start]),
                 "confirmed": int(candles.time[p.end]), "level": p.level, "target": p.target,
                 "height_sigmas": round(p.height, 2)}
                for p in detect_chart_patterns(high, low, close) if p.end >= since]
    sticks = [{"name": c.name, "direction": c.direction, "time": int(candles.time[c.index])}
              for c in candlestick_patterns(candles.open, high, low, close, since=len(candles) - 3)]
    return MarketFacts(
        bars=len(candles), last_price=float(close[-1]), trend=_trend(close, high, low),
        regime=None if reading is None else {"label": reading.regime, "probabilities": reading.probabilities,
                                             "features": reading.features},
        momentum=_momentum(close), volatility=_volatility(candles), support=support, resistance=resistance,
        patterns=patterns, candlesticks=sticks)


def summarise(symbol: str, timeframe: str, facts: MarketFacts) -> str:
    """The readable summary, written from the facts only — with the sentiment and the direction
    model's prediction when the caller put them in ``extras`` (the router does)."""
    t, m, v = facts.trend, facts.momentum, facts.volatility
    parts = [f"{symbol} on {timeframe}: the trend is {t['direction']} ({t['strength']}, ADX {t['adx_14']:.0f})"]
    if facts.regime is not None:
        label = facts.regime["label"]
        parts.append(f"the market is {label} ({facts.regime['probabilities'][label]:.0%} by the regime model)")
    parts.append(f"momentum is {m['state']} (RSI {m['rsi_14']:.0f}); volatility is {v['regime']} "
                 f"(ATR {v['atr_14_pct']:.2f}% of price, {v['atr_percentile']:.0f}th percentile)")
    text = "; ".join(parts) + "."
    if facts.support:
        text += f" Nearest support {facts.support[0].price:.6g} ({facts.support[0].touches} touches)"
        text += f", resistance {facts.resistance[0].price:.6g}." if facts.resistance else "."
    elif facts.resistance:
        text += f" Nearest resistance {facts.resistance[0].price:.6g}."
    if facts.patterns:
        latest = facts.patterns[-1]
        text += f" Latest confirmed pattern: {latest['kind'].replace('_', ' ')} ({latest['direction']})."
    sentiment = facts.extras.get("sentiment")
    if sentiment:
        count = f"{sentiment['texts']} text" + ("s" if sentiment["texts"] != 1 else "")
        text += (f" Sentiment over the last {sentiment['days']} days ({count}) is "
                 f"{sentiment['label']} (mean score {sentiment['score']:+.2f}; {sentiment['bullish']} bullish, "
                 f"{sentiment['neutral']} neutral, {sentiment['bearish']} bearish).")
    prediction = facts.extras.get("prediction")
    if prediction:
        text += " " + _prediction_sentence(prediction)
    return text


def _prediction_sentence(p: dict[str, Any]) -> str:
    """The direction model's forecast beside its measured skill: a probability alone would
    overstate a model that barely beats the naive baselines."""
    ahead = "bar" if p["horizon"] == 1 else f"{p['horizon']} bars"
    beaten = [m for m, won in p["beats_baselines"].items() if won]
    versus = (f"better than both naive baselines on {', '.join(beaten)}" if beaten
              else "not better than the naive baselines on any score")
    return (f"The direction model gives a {p['probability_up']:.0%} chance of a rise over the next {ahead} "
            f"(median return {p['expected_return']:+.2%}, 10-90% range {p['interval']['low']:+.2%} to "
            f"{p['interval']['high']:+.2%}); out of sample it was right {p['scores']['accuracy']:.1%} of the "
            f"time (AUC {p['scores']['auc']:.3f}), {versus}.")
