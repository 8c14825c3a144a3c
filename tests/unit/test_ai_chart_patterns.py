"""Chart and candlestick patterns: found where injected, rare in random walks, no look-ahead."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.pattern_series import TEMPLATES, series_with_patterns, shuffled
from tradepilot.ai.candlesticks import candlestick_patterns
from tradepilot.ai.chart_patterns import KINDS, detect_chart_patterns

SEEDS = range(2000, 2006)  # not the seeds the thresholds were tuned on


def _matches(found, injected):  # type: ignore[no-untyped-def]
    slack = (injected.end - injected.start) // 2
    return [p for p in found if p.kind == injected.kind and p.direction == injected.direction
            and injected.start - 10 <= p.end <= injected.end + slack]


def test_injected_patterns_are_found_with_recall_of_at_least_0_8() -> None:
    hits, total = Counter(), Counter()
    for seed in SEEDS:
        high, low, close, injected = series_with_patterns(20, seed)
        found = detect_chart_patterns(high, low, close)
        for pattern in injected:
            total[pattern.kind] += 1
            hits[pattern.kind] += bool(_matches(found, pattern))
    recall = sum(hits.values()) / sum(total.values())
    assert recall >= 0.8, (recall, hits, total)
    assert set(total) == set(KINDS)  # every kind was injected ...
    assert all(hits[kind] / total[kind] >= 0.6 for kind in total), (hits, total)  # ... and every kind is found


def test_a_random_walk_of_the_same_returns_gives_at_most_one_pattern_per_1000_bars() -> None:
    patterns = bars = 0
    for seed in SEEDS:
        _, _, close, _ = series_with_patterns(20, seed)
        patterns += len(detect_chart_patterns(*shuffled(close, seed + 1)))
        bars += close.size
    assert patterns * 1000 / bars <= 1.0, (patterns, bars)


def test_a_pattern_is_found_from_the_bars_up_to_its_confirmation_only() -> None:
    high, low, close, _ = series_with_patterns(10, 7)
    found = detect_chart_patterns(high, low, close)
    assert found
    for pattern in found:
        cut = pattern.end + 1
        early = detect_chart_patterns(high[:cut], low[:cut], close[:cut])
        assert any(p.kind == pattern.kind and p.end == pattern.end and p.start == pattern.start for p in early)
        assert all(p.end < cut for p in early)


def test_patterns_do_not_depend_on_the_price_scale() -> None:
    high, low, close, _ = series_with_patterns(10, 11)
    big = detect_chart_patterns(high, low, close)
    small = detect_chart_patterns(high * 1e-5, low * 1e-5, close * 1e-5)
    assert [(p.kind, p.start, p.end) for p in big] == [(p.kind, p.start, p.end) for p in small]
    assert small[0].level == pytest.approx(big[0].level * 1e-5)


def test_a_double_top_reports_its_swings_neckline_and_measured_target() -> None:
    rng = np.random.default_rng(3)
    knots = np.array(TEMPLATES["double_top"])
    flat = np.full(60, np.log(100.0))
    shape = np.interp(np.linspace(0, 1, 80), knots[:, 0], knots[:, 1]) * 0.2  # a 20% top
    log_close = np.concatenate([flat + rng.normal(0, 0.003, 60).cumsum() * 0.1, np.log(100.0) + shape,
                                np.log(100.0) + shape[-1] + np.zeros(30)])
    close = np.exp(log_close + rng.normal(0, 0.002, log_close.size))
    found = [p for p in detect_chart_patterns(close * 1.002, close * 0.998, close) if p.kind == "double_top"]
    assert len(found) == 1
    top = found[0]
    assert top.direction == "bearish" and len(top.points) == 4
    (_, pre), (_, first), (_, neck), (_, second) = top.points
    assert pre < neck < min(first, second) and abs(first - second) < 0.05 * first
    assert top.level == pytest.approx(neck, rel=0.02)
    assert top.target == pytest.approx(neck * neck / min(first, second), rel=0.03)  # height projected down
    assert close[top.end] < top.level


def test_nothing_is_found_in_too_short_or_flat_series() -> None:
    assert detect_chart_patterns(np.ones(5), np.ones(5), np.ones(5)) == []
    flat = np.full(500, 42.0)
    assert detect_chart_patterns(flat, flat, flat) == []


def test_candlesticks_come_from_talib_with_their_direction() -> None:
    # a falling market, then a white candle engulfing the previous black one
    opens = np.array([110, 108, 106, 104, 102, 100, 98, 96, 94, 92.5, 90.5], dtype=float)
    closes = np.array([108.5, 106.5, 104.5, 102.5, 100.5, 98.5, 96.5, 94.5, 92.8, 91.0, 93.5], dtype=float)
    highs = np.maximum(opens, closes) + 0.2
    lows = np.minimum(opens, closes) - 0.2
    found = candlestick_patterns(opens, highs, lows, closes, since=10)
    engulfing = [c for c in found if c.name == "engulfing"]
    assert engulfing and engulfing[0].index == 10 and engulfing[0].direction == "bullish"
    assert all(c.index >= 10 for c in found)
