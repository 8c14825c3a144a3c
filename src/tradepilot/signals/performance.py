"""How good the signals were, measured on what the market did after them, next to chance.

For the signals whose horizon has passed: the hit rate (share with a positive return at the
horizon), the mean and median of that return, and how many ended at the stop, the target or
the horizon — overall and per source. Beside them a **random-entry baseline**: for every
scored signal, ``samples`` entries at random bars of the same symbol and timeframe (drawn
from the bars since that symbol's first scored signal, with a seeded generator, so the same
request gives the same figures), held for the same horizon on the same side, priced like the
signals (entry at the bar's open, exit at the horizon's last close). A source that does not
beat its baseline is no better than entering at random.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from tradepilot.signals import constants as k


@dataclass(frozen=True)
class Scored:
    """A signal whose horizon return is known."""

    source: str
    symbol: str
    timeframe: str
    horizon: int
    side: str
    created_ms: int
    horizon_return: Decimal
    outcome: str | None


@dataclass(frozen=True)
class Series:
    """One symbol's closed bars: open times (ms), opens and closes."""

    time: np.ndarray
    open: np.ndarray
    close: np.ndarray


def summary(returns: Sequence[float]) -> dict[str, Any]:
    """Count, hit rate, mean and median of ``returns`` (None figures for none)."""
    if not returns:
        return {"count": 0, "hit_rate": None, "mean_return": None, "median_return": None}
    return {"count": len(returns), "hit_rate": round(sum(1 for r in returns if r > 0) / len(returns), 6),
            "mean_return": round(statistics.fmean(returns), 8), "median_return": round(statistics.median(returns), 8)}


def _stats(group: Sequence[Scored]) -> dict[str, Any]:
    out = summary([float(s.horizon_return) for s in group])
    out["outcomes"] = {name: sum(1 for s in group if s.outcome == name) for name in (k.TAKE_PROFIT, k.STOP_LOSS, k.HORIZON)}
    return out


def _beats(figures: dict[str, Any], chance: dict[str, Any]) -> dict[str, bool] | None:
    """Whether the hit rate and the mean return are above the baseline's (None: no baseline drawn)."""
    if not chance["count"] or not figures["count"]:
        return None
    return {name: figures[name] > chance[name] for name in ("hit_rate", "mean_return")}


def random_entries(signal: Scored, series: Series, rng: np.random.Generator, samples: int, start_ms: int) -> list[float]:
    """``samples`` returns of random entries like ``signal`` (same side and horizon) at bars from ``start_ms``."""
    first = int(np.searchsorted(series.time, start_ms, side="left"))
    last = series.time.size - signal.horizon  # the last entry bar whose horizon has closed
    if last < first:
        return []
    entries = rng.integers(first, last + 1, size=samples)
    change = series.close[entries + signal.horizon - 1] / series.open[entries] - 1.0
    return [float(v) for v in (change if signal.side == k.BUY else -change)]


def performance(signals: Sequence[Scored], series_of: Callable[[str, str], Series], *, seed: int,
                samples: int) -> dict[str, Any]:
    """The signals' figures overall and by source, each beside its random-entry baseline."""
    rng = np.random.default_rng(seed)
    first_ms: dict[tuple[str, str], int] = {}
    for s in signals:
        key = (s.symbol, s.timeframe)
        first_ms[key] = min(first_ms.get(key, s.created_ms), s.created_ms)
    cache: dict[tuple[str, str], Series] = {}
    baseline: dict[str, list[float]] = {}
    for s in sorted(signals, key=lambda x: (x.created_ms, x.symbol, x.source)):  # a stable order: seeded figures
        key = (s.symbol, s.timeframe)
        if key not in cache:
            cache[key] = series_of(*key)
        baseline.setdefault(s.source, []).extend(random_entries(s, cache[key], rng, samples, first_ms[key]))
    sources = sorted({s.source for s in signals})
    by_source = {src: _stats([s for s in signals if s.source == src]) for src in sources}
    for src, figures in by_source.items():
        figures["beats_baseline"] = _beats(figures, summary(baseline.get(src, [])))
    return {
        "overall": _stats(signals),
        "by_source": by_source,
        "baseline": {
            "method": "random_entry", "seed": seed, "samples_per_signal": samples,
            "overall": summary([r for src in sources for r in baseline.get(src, [])]),
            "by_source": {src: summary(baseline.get(src, [])) for src in sources},
        },
    }
