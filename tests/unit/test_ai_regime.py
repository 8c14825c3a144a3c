"""The regime classifier on constructed segments: drift, Ornstein-Uhlenbeck and GARCH.

The segments are built here, independently of the simulator the model was trained on,
and strung together in one series so that each window's history holds other regimes.
"""

from __future__ import annotations

import numpy as np
import pytest

from tradepilot.ai.regime import RegimeModel, load_regime_model, train_regime_model
from tradepilot.ai.regime_features import FEATURES, window_features

SIGMA = 0.01


def _drift(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice([-1, 1]) * 0.3 * SIGMA + rng.normal(0, SIGMA, n)


def _ou(rng: np.random.Generator, n: int) -> np.ndarray:
    x, level = np.empty(n + 1), 0.0
    x[0] = 0.0
    for t in range(n):
        level += -0.12 * level + rng.normal(0, SIGMA)
        x[t + 1] = level
    return np.diff(x)


def _garch(rng: np.random.Generator, n: int) -> np.ndarray:
    alpha, beta, target = 0.12, 0.8, (3 * SIGMA) ** 2
    h, r, out = target, 0.0, np.empty(n)
    for t in range(n):
        h = target * (1 - alpha - beta) + alpha * r * r + beta * h
        r = rng.normal(0, np.sqrt(h))
        out[t] = r
    return out


BUILDERS = {"trending": _drift, "ranging": _ou, "volatile": _garch}


def _segmented_series(seed: int, segments: int = 60) -> tuple[np.ndarray, list[tuple[str, int]]]:
    rng = np.random.default_rng(seed)
    moves = [rng.normal(0, SIGMA, 1000)]  # an ordinary market first
    ends, at = [], 1000
    kinds = list(BUILDERS)
    for k in range(segments):
        kind = kinds[(k + rng.integers(0, 3)) % 3]
        n = int(rng.integers(150, 250))
        moves.append(BUILDERS[kind](rng, n))
        moves.append(rng.normal(0, SIGMA, 100))  # calm between regimes
        ends.append((kind, at + n))
        at += n + 100
    return np.log(100.0) + np.concatenate([[0.0], np.cumsum(np.concatenate(moves))]), ends


def test_the_shipped_model_labels_at_least_90_percent_of_constructed_segments() -> None:
    model = load_regime_model()
    log_close, ends = _segmented_series(seed=42)
    readings = [(kind, model.classify(log_close, end)) for kind, end in ends]
    correct = sum(reading is not None and reading.regime == kind for kind, reading in readings)
    assert correct / len(readings) >= 0.9, [(k, r.regime if r else None) for k, r in readings]
    assert {kind for kind, _ in ends} == set(BUILDERS)


def test_a_reading_has_probabilities_and_the_facts_behind_it() -> None:
    model = load_regime_model()
    log_close, ends = _segmented_series(seed=5, segments=3)
    reading = model.classify(log_close, ends[0][1])
    assert reading is not None
    assert set(reading.probabilities) == {"trending", "ranging", "volatile"}
    assert sum(reading.probabilities.values()) == pytest.approx(1.0)
    assert reading.probabilities[reading.regime] == max(reading.probabilities.values())
    assert list(reading.features) == list(FEATURES)
    assert model.meta["held_out_accuracy"] >= 0.9


def test_features_use_only_bars_up_to_the_window_end() -> None:
    log_close, _ = _segmented_series(seed=9, segments=4)
    end = 1500
    changed = log_close.copy()
    changed[end + 1:] += np.random.default_rng(1).normal(0, 0.5, changed.size - end - 1).cumsum()
    assert np.array_equal(window_features(log_close, end), window_features(changed, end))
    assert not np.array_equal(window_features(log_close, end + 5), window_features(changed, end + 5))


def test_too_little_data_or_a_flat_market_gives_no_reading() -> None:
    model = load_regime_model()
    assert model.classify(np.log(np.full(50, 100.0))) is None
    assert model.classify(np.log(np.full(2000, 100.0))) is None


def test_training_reproduces_the_shipped_model_and_it_survives_json() -> None:
    shipped = load_regime_model()
    retrained = train_regime_model(shipped.meta["samples_per_regime"], shipped.meta["seed"])
    np.testing.assert_allclose(retrained.coef, shipped.coef, rtol=1e-6, atol=1e-9)
    assert retrained.meta == shipped.meta
    assert RegimeModel.from_json(retrained.to_json()).meta == retrained.meta
    with pytest.raises(ValueError):
        RegimeModel.from_json('{"kind": "pickle"}')
