"""Chart patterns found by peak detection: double tops and bottoms, head and shoulders,
triangles and range breakouts.

A pattern counts only once the market confirms it — a close through its neckline or
trend line within a bounded number of bars, before the pattern is invalidated — because
an unconfirmed "double top" is just two highs. Sizes are measured in the series' own
typical one-bar move (``pivots.trailing_scale``) so the rules hold across symbols and
timeframes. The thresholds were tuned so that injected patterns are found (recall >= 0.8)
while a random walk made of the same returns yields at most one pattern per 1,000 bars;
both are measured in ``tests/unit/test_ai_chart_patterns.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tradepilot.ai.pivots import Pivot, trailing_scale, zigzag

Direction = Literal["bullish", "bearish"]
KINDS = ("double_top", "double_bottom", "head_and_shoulders", "inverse_head_and_shoulders",
         "ascending_triangle", "descending_triangle", "symmetric_triangle", "range_breakout")


@dataclass(frozen=True, slots=True)
class PatternRules:
    """Thresholds in units of the typical one-bar move (sigma) unless said otherwise."""

    reversal: float = 5.0  # the move away from an extreme that confirms it as a swing
    min_height: float = 10.0  # the pattern's height (top to neckline)
    level_tolerance: float = 0.2  # two "equal" tops/bottoms/shoulders differ by at most this x height
    min_width: int = 8  # bars between the two tops / shoulders
    max_width: int = 160
    confirm_within: float = 1.0  # x the pattern's width: bars allowed for the confirming close
    break_margin: float = 0.1  # x height: the close must clear the level by this much
    line_tolerance: float = 0.05  # x the triangle's opening width: how far a swing may sit off its line
    line_break: float = 1.5  # sigma beyond a triangle's line for a breakout close
    range_bars: int = 30  # a consolidation's length, for range breakouts
    range_tightness: float = 0.7  # x sigma x sqrt(n): under half a random walk's typical range (~1.6 sigma sqrt(n))
    range_break: float = 3.0  # sigma beyond the range for a breakout close ...
    range_break_bars: int = 3  # ... within this many bars of the range's end


@dataclass(frozen=True, slots=True)
class ChartPattern:
    kind: str
    direction: Direction
    start: int  # bar index of the first swing
    end: int  # bar index of the confirming close
    points: tuple[tuple[int, float], ...]  # (bar index, price) of the swings that draw it
    level: float  # the neckline / trend line / range edge the close went through (price)
    target: float  # the measured move: the pattern's height projected from the level (price)
    height: float  # in sigmas


def detect_chart_patterns(high: np.ndarray, low: np.ndarray, close: np.ndarray,
                          rules: PatternRules | None = None) -> list[ChartPattern]:
    """Every confirmed pattern in the series, ordered by confirmation bar."""
    rules = rules or PatternRules()
    h, lo, c = (np.log(np.asarray(a, dtype=np.float64)) for a in (high, low, close))
    scale = trailing_scale(c)
    ctx = _Context(h, lo, c, scale, rules)
    pivots = zigzag(h, lo, rules.reversal * scale)
    found = [*_doubles(ctx, pivots), *_head_and_shoulders(ctx, pivots), *_triangles(ctx, pivots),
             *_range_breakouts(ctx)]
    return _distinct(found)


@dataclass(frozen=True, slots=True)
class _Context:
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    scale: np.ndarray  # the typical one-bar move up to each bar (pivots.trailing_scale)
    rules: PatternRules

    def sigma(self, swings: tuple[Pivot, ...] | list[Pivot]) -> float:
        """The pattern's unit: the scale at its last swing (known then; NaN fails every test)."""
        return float(self.scale[swings[-1].index])

    def confirm(self, swings: tuple[Pivot, ...] | list[Pivot], width: int, *, below: float | None = None, above: float | None = None,
                invalid_above: float | None = None, invalid_below: float | None = None) -> int | None:
        """The first bar after the last swing (once it is confirmed) closing beyond the level,
        unless the pattern is invalidated first (a high above / low below its extreme) or the
        window runs out."""
        after = swings[-1].index
        last = min(self.close.size - 1, after + max(1, int(width * self.rules.confirm_within)))
        for i in range(max(after + 1, swings[-1].confirmed_at), last + 1):
            if invalid_above is not None and self.high[i] > invalid_above:
                return None
            if invalid_below is not None and self.low[i] < invalid_below:
                return None
            if below is not None and self.close[i] < below:
                return i
            if above is not None and self.close[i] > above:
                return i
        return None

    def pattern(self, kind: str, direction: Direction, swings: tuple[Pivot, ...], end: int, level: float,
                height: float, sigma: float) -> ChartPattern:
        target = level - height if direction == "bearish" else level + height
        return ChartPattern(kind=kind, direction=direction, start=swings[0].index, end=end,
                            points=tuple((p.index, math.exp(p.level)) for p in swings),
                            level=math.exp(level), target=math.exp(target), height=height / sigma)


def _kinds(swings: tuple[Pivot, ...] | list[Pivot], first: str) -> bool:
    other = "low" if first == "high" else "high"
    return all(p.kind == (first if k % 2 == 0 else other) for k, p in enumerate(swings))


def _doubles(ctx: _Context, pivots: list[Pivot]) -> Iterator[ChartPattern]:
    """Two equal tops with a trough between, after a rise (and the mirror image)."""
    r = ctx.rules
    for k in range(len(pivots) - 3):
        before, first, middle, second = pivots[k:k + 4]
        top = _kinds(pivots[k:k + 4], "low")
        if not top and not _kinds(pivots[k:k + 4], "high"):
            continue
        sign = 1.0 if top else -1.0  # mirror a double bottom into a double top
        a, m, b, pre = sign * first.level, sign * middle.level, sign * second.level, sign * before.level
        height = min(a, b) - m
        width = second.index - first.index
        sigma = ctx.sigma(pivots[k:k + 4])
        if not height >= r.min_height * sigma or abs(a - b) > r.level_tolerance * height:
            continue
        if not r.min_width <= width <= r.max_width or pre > m - 0.5 * height:  # no prior move into it
            continue
        margin = r.break_margin * height
        extreme = sign * max(a, b)  # the higher top (the lower bottom): beyond it, no pattern
        if top:
            end = ctx.confirm(pivots[k:k + 4], width, below=middle.level - margin, invalid_above=extreme)
        else:
            end = ctx.confirm(pivots[k:k + 4], width, above=middle.level + margin, invalid_below=extreme)
        if end is not None:
            yield ctx.pattern("double_top" if top else "double_bottom", "bearish" if top else "bullish",
                              (before, first, middle, second), end, middle.level, height, sigma)


def _head_and_shoulders(ctx: _Context, pivots: list[Pivot]) -> Iterator[ChartPattern]:
    """Shoulder, higher head, shoulder over a roughly flat neckline (and the inverse)."""
    r = ctx.rules
    for k in range(len(pivots) - 5):
        swings = tuple(pivots[k:k + 6])
        top = _kinds(swings, "low")
        if not top and not _kinds(swings, "high"):
            continue
        sign = 1.0 if top else -1.0
        pre, left, n1, head, n2, right = (sign * p.level for p in swings)
        width = swings[5].index - swings[1].index
        slope = (n2 - n1) / max(1, swings[4].index - swings[2].index)
        neck_at_head = n1 + slope * (swings[3].index - swings[2].index)
        height = head - neck_at_head
        sigma = ctx.sigma(swings)
        if not height >= r.min_height * sigma or not 2 * r.min_width <= width <= 2 * r.max_width:
            continue
        shoulders_ok = (head - max(left, right) >= 0.25 * height and abs(left - right) <= 0.3 * height
                        and min(left, right) - max(n1, n2) >= 0.3 * height)
        if not shoulders_ok or abs(n1 - n2) > 0.3 * height or pre > min(n1, n2) - 0.3 * height:
            continue
        neck_now = n2 + slope * (swings[5].index - swings[4].index)  # close enough over the break's few bars
        margin = r.break_margin * height
        if top:
            end = ctx.confirm(swings, width // 2, below=neck_now - margin, invalid_above=head)
        else:
            end = ctx.confirm(swings, width // 2, above=-neck_now + margin, invalid_below=-head)
        if end is not None:
            yield ctx.pattern("head_and_shoulders" if top else "inverse_head_and_shoulders",
                              "bearish" if top else "bullish", swings, end, sign * neck_now, height, sigma)


def _line(points: list[Pivot]) -> tuple[float, float, float]:
    """Least-squares line through swings: (slope, intercept, largest residual)."""
    x = np.array([p.index for p in points], dtype=np.float64)
    y = np.array([p.level for p in points], dtype=np.float64)
    dx = x - x.mean()  # centred: bar numbers in the thousands would make the fit ill-conditioned
    slope = float(np.sum(dx * (y - y.mean())) / np.sum(dx * dx))
    intercept = float(y.mean() - slope * x.mean())
    return slope, intercept, float(np.max(np.abs(y - (slope * x + intercept))))


def _triangles(ctx: _Context, pivots: list[Pivot]) -> Iterator[ChartPattern]:
    """Six alternating swings (three on each line) between two converging lines, then a
    close through one of them."""
    r = ctx.rules
    for k in range(len(pivots) - 5):
        swings = pivots[k:k + 6]
        highs = [p for p in swings if p.kind == "high"]
        lows = [p for p in swings if p.kind == "low"]
        hs, hi0, h_err = _line(highs)
        ls, lo0, l_err = _line(lows)
        x0, x1 = swings[0].index, swings[-1].index
        span = x1 - x0
        start_width = (hs * x0 + hi0) - (ls * x0 + lo0)
        end_width = (hs * x1 + hi0) - (ls * x1 + lo0)
        sigma = ctx.sigma(swings)
        if span < 2 * r.min_width or span > 2 * r.max_width or not start_width >= r.min_height * sigma:
            continue
        if not 0 < end_width <= 0.6 * start_width or max(h_err, l_err) > r.line_tolerance * start_width:
            continue
        rise_hi, rise_lo = hs * span / start_width, ls * span / start_width
        if abs(rise_hi) <= 0.12 and rise_lo >= 0.3:
            kind = "ascending_triangle"
        elif abs(rise_lo) <= 0.12 and rise_hi <= -0.3:
            kind = "descending_triangle"
        elif rise_hi <= -0.2 and rise_lo >= 0.2:
            kind = "symmetric_triangle"
        else:
            continue
        margin = max(r.break_margin * end_width, r.line_break * sigma)
        for i in range(max(x1 + 1, swings[-1].confirmed_at), min(ctx.close.size, x1 + 1 + span)):
            upper, lower = hs * i + hi0, ls * i + lo0
            if upper <= lower:  # past the apex: no breakout, no pattern
                break
            if ctx.close[i] > upper + margin or ctx.close[i] < lower - margin:
                bullish = bool(ctx.close[i] > upper)
                level = upper if bullish else lower
                yield ctx.pattern(kind, "bullish" if bullish else "bearish", tuple(swings), i, level, start_width,
                                  sigma)
                break


def _range_breakouts(ctx: _Context) -> Iterator[ChartPattern]:
    """A close out of an unusually tight consolidation: a range of ``range_bars`` bars less
    than half as wide as a random walk's, cleared by a margin within a few bars."""
    r = ctx.rules
    n = r.range_bars
    j = n
    while j < ctx.close.size:
        top, bottom = float(np.max(ctx.high[j - n:j])), float(np.min(ctx.low[j - n:j]))
        height, sigma = top - bottom, float(ctx.scale[j - 1])
        if not height <= r.range_tightness * sigma * math.sqrt(n):
            j += 1
            continue
        for i in range(j, min(ctx.close.size, j + r.range_break_bars)):  # the move out may take a few bars
            up, down = ctx.close[i] > top + r.range_break * sigma, ctx.close[i] < bottom - r.range_break * sigma
            if up or down:
                level = top if up else bottom
                first = Pivot(j - n, bottom if up else top, "low" if up else "high", j - 1)
                edge = Pivot(j - 1, level, "high" if up else "low", j - 1)
                yield ctx.pattern("range_breakout", "bullish" if up else "bearish", (first, edge), i, level, height,
                                  sigma)
                j = i + n  # one breakout per range
                break
        else:
            j += 1


def _distinct(found: list[ChartPattern]) -> list[ChartPattern]:
    """One pattern per kind and confirming bar (overlapping swing windows find the same one)."""
    seen: set[tuple[str, int]] = set()
    unique = []
    for pattern in sorted(found, key=lambda p: (p.end, p.start)):
        if (pattern.kind, pattern.end) not in seen:
            seen.add((pattern.kind, pattern.end))
            unique.append(pattern)
    return unique
