"""Synthetic price series with chart patterns injected at known places (for the AI tests).

A random walk in log space with a one-bar move of ``sigma``; each injected pattern is a
piecewise-linear template (its swings) scaled to ``height`` sigmas over ``length`` bars,
plus bar noise, continuing from wherever the walk is. Highs and lows straddle the closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (fraction of the pattern's length, level in pattern heights); the neckline/base is 0
TEMPLATES: dict[str, tuple[tuple[float, float], ...]] = {
    "double_top": ((0, -0.9), (0.25, 1.0), (0.5, 0.0), (0.75, 1.0), (1.0, -0.45)),
    "head_and_shoulders": ((0, -0.7), (0.15, 0.6), (0.3, 0.0), (0.5, 1.0), (0.7, 0.0), (0.85, 0.6), (1.0, -0.45)),
    "ascending_triangle": ((0, 0.0), (0.15, 1.0), (0.33, 0.1), (0.5, 1.0), (0.66, 0.35), (0.8, 1.0),
                           (0.9, 0.6), (1.0, 1.35)),
    "symmetric_triangle": ((0, 0.05), (0.15, 1.0), (0.33, 0.0), (0.5, 0.85), (0.66, 0.15), (0.8, 0.7),
                           (0.9, 0.3), (1.0, 1.05)),
    "range_breakout": ((0, 0.0), (0.92, 0.0), (1.0, 1.0)),
}
MIRRORS = {"double_top": "double_bottom", "head_and_shoulders": "inverse_head_and_shoulders",
           "ascending_triangle": "descending_triangle", "symmetric_triangle": "symmetric_triangle",
           "range_breakout": "range_breakout"}


@dataclass(frozen=True)
class Injected:
    kind: str
    direction: str
    start: int
    end: int


def _bars(log_close: np.ndarray, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    opens = np.concatenate([[log_close[0]], log_close[:-1]])
    wick = np.abs(rng.normal(0, 0.3 * sigma, (2, log_close.size)))
    high = np.maximum(opens, log_close) + wick[0]
    low = np.minimum(opens, log_close) - wick[1]
    return np.exp(high), np.exp(low), np.exp(log_close)


def series_with_patterns(n_patterns: int, seed: int, sigma: float = 0.01, gap: int = 150
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Injected]]:
    rng = np.random.default_rng(seed)
    kinds = list(TEMPLATES)
    path: list[float] = [np.log(100.0)]
    injected = []
    for k in range(n_patterns):
        walk = path[-1] + np.cumsum(rng.normal(0, sigma, gap))
        path.extend(walk.tolist())
        kind = kinds[k % len(kinds)]
        mirror = bool(rng.integers(0, 2))
        length = int(rng.integers(50, 110)) if kind != "range_breakout" else int(rng.integers(40, 60))
        height = float(rng.uniform(16, 26)) * sigma if kind != "range_breakout" else 8 * sigma
        knots = np.array(TEMPLATES[kind])
        t = np.linspace(0, 1, length)
        shape = np.interp(t, knots[:, 0], knots[:, 1]) * height
        if kind == "range_breakout":
            shape[: int(0.92 * length)] = 0.0
        shape = -shape if mirror else shape
        noise = rng.normal(0, 0.35 * sigma, length) if kind != "range_breakout" else rng.normal(0, 0.25 * sigma, length)
        base = path[-1] - shape[0]
        segment = base + shape + noise
        start = len(path)
        path.extend(segment.tolist())
        name = MIRRORS[kind] if mirror else kind
        direction = _direction(kind, mirror)
        injected.append(Injected(name, direction, start, len(path) - 1))
    walk = path[-1] + np.cumsum(rng.normal(0, sigma, gap))
    path.extend(walk.tolist())
    high, low, close = _bars(np.array(path), sigma, rng)
    return high, low, close, injected


def _direction(kind: str, mirror: bool) -> str:
    bearish = kind in ("double_top", "head_and_shoulders")
    if mirror:
        bearish = not bearish
    return "bearish" if bearish else "bullish"


def shuffled(close: np.ndarray, seed: int, sigma: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random walk made of the same one-bar returns in a random order (no patterns left)."""
    rng = np.random.default_rng(seed)
    returns = np.diff(np.log(close))
    log_close = np.log(close[0]) + np.concatenate([[0.0], np.cumsum(rng.permutation(returns))])
    return _bars(log_close, sigma, rng)
