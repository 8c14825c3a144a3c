"""Labelled market regimes to train and test the regime classifier on.

Each sample is a history of ordinary random-walk bars (the market's normal volatility,
half the time with an earlier regime inside it) followed by a window in one regime: a drift (``trending``), an Ornstein-Uhlenbeck process
pulled back to its mean (``ranging``), or GARCH(1,1) volatility several times the normal
level (``volatile``). Parameters are drawn from wide ranges so the classifier learns the
shape of each regime, not one setting of it.
"""

from __future__ import annotations

import numpy as np

from tradepilot.ai.regime_features import HISTORY, WINDOW

REGIMES = ("trending", "ranging", "volatile")


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance shocks, fat-tailed as real returns are (Student t, 3 to 30 degrees of
    freedom): fat tails alone must not read as a volatile regime."""
    df = float(rng.uniform(3.0, 30.0))
    return rng.standard_t(df, n) / np.sqrt(df / (df - 2.0))


def _trending(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    drift = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.5) * sigma
    return np.cumsum(drift + sigma * rng.uniform(0.7, 1.3) * _noise(rng, n))


def _ranging(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    theta, shocks = rng.uniform(0.05, 0.3), sigma * rng.uniform(0.7, 1.3) * _noise(rng, n)
    x, path = 0.0, np.empty(n)
    for t in range(n):
        x += -theta * x + shocks[t]
        path[t] = x
    return path


def _volatile(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    alpha = rng.uniform(0.08, 0.2)
    beta = rng.uniform(0.7, min(0.85, 0.97 - alpha))
    variance = (sigma * rng.uniform(2.0, 4.0)) ** 2
    omega = variance * (1 - alpha - beta)
    h, r, moves, shocks = variance, 0.0, np.empty(n), _noise(rng, n)
    for t in range(n):
        h = omega + alpha * r * r + beta * h
        r = np.sqrt(h) * shocks[t]
        moves[t] = r
    return np.cumsum(moves)


SIMULATORS = {"trending": _trending, "ranging": _ranging, "volatile": _volatile}


def labelled_sample(regime: str, rng: np.random.Generator, *, window: int = WINDOW, history: int = HISTORY,
                    sigma: float | None = None) -> np.ndarray:
    """Log closes: ``history`` random-walk bars, then ``window`` bars of ``regime``."""
    sigma = sigma if sigma is not None else float(rng.uniform(0.002, 0.03))
    moves = sigma * _noise(rng, history)
    if rng.random() < 0.5:  # half the histories hold an earlier regime: a burst or a trend
        n = int(rng.integers(100, 300))
        at = int(rng.integers(0, history - n))
        moves[at:at + n] = np.diff(SIMULATORS[str(rng.choice(REGIMES))](rng, n + 1, sigma))
    before = np.log(100.0) + np.cumsum(moves)
    return np.concatenate([before, before[-1] + SIMULATORS[regime](rng, window, sigma)])
