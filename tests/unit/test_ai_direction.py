"""Features and the direction model: no look-ahead, a planted signal is found, honest scores."""

from __future__ import annotations

import numpy as np
import pytest

from tradepilot.ai.direction import DirectionModel, walk_forward, walk_forward_splits
from tradepilot.ai.features import FEATURE_NAMES, WARMUP, Candles, feature_matrix


def _candles(returns: np.ndarray, seed: int = 0) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(returns))
    opens = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0, 0.002, (2, close.size)))
    high = np.maximum(opens, close) * (1 + wick[0])
    low = np.minimum(opens, close) * (1 - wick[1])
    volume = rng.lognormal(3, 0.5, close.size)
    return Candles(np.arange(close.size) * 3600.0, opens, high, low, close, volume)


def _momentum(n: int, seed: int, phi: float = 0.25) -> np.ndarray:
    """AR(1) returns: tomorrow tends to follow today — a signal a model should find."""
    rng = np.random.default_rng(seed)
    r, out = 0.0, np.empty(n)
    for t in range(n):
        r = phi * r + rng.normal(0, 0.01)
        out[t] = r
    return out


def test_features_at_t_use_only_bars_up_to_t() -> None:
    candles = _candles(np.random.default_rng(1).normal(0, 0.01, 600))
    base = feature_matrix(candles)
    assert base.shape == (600, len(FEATURE_NAMES))
    assert np.all(np.isnan(base[:WARMUP])) and np.all(np.isfinite(base[WARMUP:]))
    for t in (WARMUP, 300, 598):
        future = Candles(*(a.copy() for a in (candles.time, candles.open, candles.high, candles.low,
                                              candles.close, candles.volume)))
        for array in (future.open, future.high, future.low, future.close):
            array[t + 1:] *= 1.7
        future.volume[t + 1:] *= 9
        moved = feature_matrix(future)
        np.testing.assert_array_equal(moved[:t + 1], base[:t + 1])
        assert not np.allclose(moved[t + 1], base[t + 1])


def test_walk_forward_splits_keep_an_embargo_and_never_train_on_the_future() -> None:
    rows = np.arange(100, 3000)
    splits = walk_forward_splits(rows, horizon=6, folds=5, min_train=500)
    tested = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(tested, rows[500:])  # every later row is tested exactly once
    for train, test in splits:
        assert train.max() + 6 < test.min()


def _reverting(n: int, seed: int, k: float = 0.08) -> np.ndarray:
    """Returns pulled against the last 12 bars' move: a signal last-direction cannot see."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    for t in range(12, n):
        out[t] = -k * out[t - 12:t].sum() + rng.normal(0, 0.01)
    return out


def test_a_planted_signal_is_found_and_reported_as_beating_the_baselines() -> None:
    result = walk_forward(_candles(_reverting(4000, seed=3)), horizon=1, folds=4)
    assert result["model"]["auc"] > 0.55 and result["model"]["accuracy"] > 0.53
    assert result["beats_baselines"]["auc"] and result["beats_baselines"]["brier"]
    assert result["linear"]["auc"] > 0.55  # a linear pull: the linear baseline sees it too


def test_on_a_random_walk_the_scores_stay_at_chance() -> None:
    result = walk_forward(_candles(np.random.default_rng(5).normal(0, 0.01, 4000)), horizon=1, folds=4)
    assert abs(result["model"]["auc"] - 0.5) < 0.05
    assert result["model"]["brier"] > 0.245  # no better than a coin that knows the base rate, give or take


def test_too_little_history_is_refused() -> None:
    with pytest.raises(ValueError, match="too little history"):
        walk_forward(_candles(np.zeros(300) + 0.001), horizon=1)


def test_a_fitted_model_predicts_from_the_past_only_and_survives_json() -> None:
    candles = _candles(_momentum(2500, seed=8))
    model = DirectionModel.fit(candles.head(2000), horizon=1, meta={"symbol": "TEST"})
    prediction = model.predict(candles, at=2100)
    assert prediction is not None and 0 < prediction.probability_up < 1
    low, high = prediction.interval
    assert low <= prediction.expected_return <= high and low < high
    assert model.predict(candles.head(2101)) == prediction  # later bars do not matter
    restored = DirectionModel.from_json(model.to_json())
    assert restored.predict(candles, at=2100) == prediction
    assert restored.meta["symbol"] == "TEST" and restored.meta["trained_rows"] > 1800
    other = model.predict(candles, at=2101)
    assert other is not None and other.probability_up != prediction.probability_up
    with pytest.raises(ValueError):
        DirectionModel.from_json('{"kind": "pickle"}')
