"""The built-in models as the API lists them: what each is, what it was fitted on, and its
measured scores next to its baselines (from the model files themselves, not restated)."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from tradepilot.ai.candlesticks import RECOGNISERS
from tradepilot.ai.chart_patterns import KINDS, PatternRules
from tradepilot.ai.direction_registry import DirectionRegistry
from tradepilot.ai.regime import RegimeModel, load_regime_model
from tradepilot.ai.sentiment import SentimentModel, load_sentiment_model


@cache
def regime_model() -> RegimeModel:
    return load_regime_model()


@cache
def sentiment_model() -> SentimentModel:
    return load_sentiment_model()


def built_in_models() -> list[dict[str, Any]]:
    regime, sentiment = regime_model(), sentiment_model()
    held_out = sentiment.meta["held_out"]
    return [
        {"name": "regime-logistic", "task": "regime", "kind": "multinomial logistic regression",
         "status": "ready", "classes": list(regime.classes), "trained_on": regime.meta["trained_on"],
         "scores": {"held_out_accuracy": regime.meta["held_out_accuracy"]}, "baselines": {}},
        {"name": "sentiment-tfidf-vader", "task": "sentiment", "kind": "TF-IDF + finance VADER, logistic regression",
         "status": "ready", "classes": ["bearish", "neutral", "bullish"],
         "trained_on": f"{sentiment.meta['trained_on']} labelled finance-news tweets",
         "scores": held_out["model"], "baselines": {k: v for k, v in held_out.items() if k not in ("model", "held_out")}},
        {"name": "chart-patterns", "task": "patterns", "kind": "rules over online zigzag swings",
         "status": "ready", "classes": list(KINDS), "trained_on": "thresholds tuned on injected patterns",
         "scores": {}, "baselines": {}, "parameters": asdict(PatternRules())},
        {"name": "candlesticks-talib", "task": "patterns", "kind": "TA-Lib candlestick recognisers",
         "status": "ready", "classes": sorted(RECOGNISERS), "trained_on": None, "scores": {}, "baselines": {}},
    ]


def direction_models(registry: DirectionRegistry) -> list[dict[str, Any]]:
    """One entry per trained direction model (symbol, timeframe, horizon) with its walk-forward
    scores beside the baselines'; a single ``not_ready`` entry while none is trained."""
    kind = "LightGBM classifier + quantile regressions (logistic regression as the linear baseline)"
    trained = registry.trained()
    if not trained:
        return [{"name": "direction-lightgbm", "task": "direction", "kind": kind, "status": "not_ready",
                 "classes": ["down", "up"], "trained_on": None, "scores": {}, "baselines": {}}]
    out = []
    for meta in trained:
        walk, window = meta["scores"], meta["window"]
        out.append({
            "name": "direction-lightgbm", "task": "direction", "kind": kind, "status": "ready", "classes": ["down", "up"],
            "trained_on": f"{meta['symbol']} {meta['timeframe']} on {meta['venue']}: {meta['bars']} bars, "
                          f"{window['first_bar']} .. {window['last_bar']}",
            "scores": walk["model"], "baselines": {k: walk[k] for k in ("linear", "always_up", "last_direction")},
            "parameters": {"symbol": meta["symbol"], "timeframe": meta["timeframe"], "horizon": meta["horizon"],
                           "trained_at": meta["trained_at"], "beats_baselines": walk["beats_baselines"],
                           "test_bars": walk["test_bars"], "folds": walk["folds"]}})
    return out
