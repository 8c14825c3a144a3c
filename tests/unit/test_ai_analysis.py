"""Swings, levels and the market analysis facts: online, measured, and moved by the data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.pattern_series import series_with_patterns
from tradepilot.ai.analysis import InsufficientHistory, analyse, summarise
from tradepilot.ai.features import Candles
from tradepilot.ai.pivots import trailing_scale, zigzag
from tradepilot.ai.regime import load_regime_model


def _candles(seed: int, n: int = 1500) -> Candles:
    high, low, close, _ = series_with_patterns(max(1, n // 250), seed)
    high, low, close = high[:n], low[:n], close[:n]
    opens = np.concatenate([[close[0]], close[:-1]])
    volume = np.random.default_rng(seed).lognormal(2, 0.4, close.size)
    return Candles(np.arange(close.size) * 3600.0, opens, np.maximum(high, opens), np.minimum(low, opens), close,
                   volume)


def test_swings_alternate_are_online_and_one_bar_is_never_two_swings() -> None:
    candles = _candles(1)
    log_high, log_low = np.log(candles.high), np.log(candles.low)
    threshold = 5 * trailing_scale(np.log(candles.close))
    swings = zigzag(log_high, log_low, threshold)
    assert len(swings) > 10
    assert all(a.kind != b.kind and a.index < b.index for a, b in itertools.pairwise(swings))
    assert all(s.index < s.confirmed_at for s in swings)
    for cut in (400, 900, 1499):  # the swings known at a bar are those the whole series gives up to it
        early = zigzag(log_high[:cut + 1], log_low[:cut + 1], threshold[:cut + 1])
        assert early == [s for s in swings if s.confirmed_at <= cut]


def test_analysis_reports_measured_facts_and_a_summary_written_from_them() -> None:
    facts = analyse(_candles(2), load_regime_model())
    assert facts.bars == len(_candles(2)) and facts.last_price > 0
    assert facts.trend["direction"] in ("up", "down", "sideways") and facts.trend["adx_14"] > 0
    assert facts.regime is not None and facts.regime["label"] in ("trending", "ranging", "volatile")
    assert 0 <= facts.momentum["rsi_14"] <= 100
    assert 0 <= facts.volatility["atr_percentile"] <= 100 and facts.volatility["annualised_pct"] > 0
    assert all(level.price < facts.last_price for level in facts.support)
    assert all(level.price > facts.last_price for level in facts.resistance)
    assert facts.support or facts.resistance
    text = summarise("BTC/USDT", "1h", facts)
    assert "BTC/USDT" in text and facts.trend["direction"] in text and facts.regime["label"] in text


def test_a_different_series_gives_different_answers() -> None:
    model = load_regime_model()
    one, two = analyse(_candles(3), model), analyse(_candles(4), model)
    for name in ("trend", "momentum", "volatility"):
        assert getattr(one, name) != getattr(two, name), name
    assert one.regime != two.regime
    assert [lv.price for lv in one.support + one.resistance] != [lv.price for lv in two.support + two.resistance]


def test_too_short_a_history_is_refused() -> None:
    with pytest.raises(InsufficientHistory):
        analyse(_candles(5).head(150))


def test_the_summary_carries_the_sentiment_and_the_prediction_it_is_given() -> None:
    facts = analyse(_candles(6), load_regime_model())
    bare = summarise("BTC/USDT", "1h", facts)
    assert "Sentiment" not in bare and "direction model" not in bare
    facts.extras["sentiment"] = {"days": 30, "texts": 3, "score": 0.4123, "label": "bullish", "bullish": 2,
                                 "neutral": 1, "bearish": 0}
    facts.extras["prediction"] = {"horizon": 4, "probability_up": 0.5731, "expected_return": 0.00213,
                                  "interval": {"low": -0.0125, "high": 0.0161},
                                  "scores": {"accuracy": 0.5342, "auc": 0.5512, "brier": 0.2471},
                                  "beats_baselines": {"accuracy": True, "auc": True, "brier": False}}
    text = summarise("BTC/USDT", "1h", facts)
    assert text.startswith(bare[:-1])  # the facts' sentences stay as they were
    assert "over the last 30 days (3 texts) is bullish (mean score +0.41; 2 bullish, 1 neutral, 0 bearish)" in text
    assert "57% chance of a rise over the next 4 bars (median return +0.21%" in text
    assert "-1.25% to +1.61%" in text and "right 53.4% of the time (AUC 0.551)" in text
    assert "better than both naive baselines on accuracy, auc." in text
    facts.extras["sentiment"] = {**facts.extras["sentiment"], "score": -0.3, "label": "bearish"}
    facts.extras["prediction"]["beats_baselines"] = {"accuracy": False, "auc": False, "brier": False}
    changed = summarise("BTC/USDT", "1h", facts)
    assert "is bearish (mean score -0.30" in changed and "not better than the naive baselines" in changed
