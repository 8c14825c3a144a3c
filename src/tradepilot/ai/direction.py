"""The price-movement model: P(up over the next ``horizon`` bars) and the return's quantiles.

A LightGBM classifier for the direction and three LightGBM quantile regressions (10%, 50%,
90%) for the return and its interval, over ``features.feature_matrix``; a logistic
regression on the same features is the linear baseline. Scores come from walk-forward
(rolling-origin) validation with an embargo of ``horizon`` bars between each training
window and the bars it is tested on, so no label reaches across. Every model carries its
scores and those of the naive baselines — always-up and last-direction — and says whether
it beats them. Saved as JSON with LightGBM's own text format inside (nothing unpickled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradepilot.ai.features import FEATURE_NAMES, Candles, feature_matrix, forward_return

QUANTILES = (0.1, 0.5, 0.9)
# Small, heavily regularised trees: market direction is mostly noise, and a flexible model
# fits the noise — measured on BTC/USD 1h, 15 leaves x 150 rounds lost to last-direction on
# the Brier score, 4 leaves x 80 rounds beat it (docs/ai-evaluation.md).
LGBM_PARAMS: dict[str, Any] = {
    "num_leaves": 4, "learning_rate": 0.02, "min_data_in_leaf": 400, "feature_fraction": 0.8,
    "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 10.0, "seed": 7, "deterministic": True,
    "force_row_wise": True, "num_threads": 1, "verbose": -1,
}
ROUNDS = 80


@dataclass(frozen=True)
class Prediction:
    probability_up: float
    expected_return: float  # the median forecast of the log return over the horizon
    interval: tuple[float, float]  # 10% .. 90% quantiles of it
    at: int  # the bar index the prediction was made at


def _lgb() -> Any:
    import lightgbm

    return lightgbm


def _train_classifier(x: np.ndarray, y: np.ndarray) -> Any:
    lgb = _lgb()
    return lgb.train({**LGBM_PARAMS, "objective": "binary"}, lgb.Dataset(x, y, feature_name=list(FEATURE_NAMES)),
                     num_boost_round=ROUNDS)


def _train_quantile(x: np.ndarray, r: np.ndarray, alpha: float) -> Any:
    lgb = _lgb()
    return lgb.train({**LGBM_PARAMS, "objective": "quantile", "alpha": alpha},
                     lgb.Dataset(x, r, feature_name=list(FEATURE_NAMES)), num_boost_round=ROUNDS)


@dataclass
class LinearBaseline:
    """Logistic regression on standardised features (NaNs as the training mean)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> LinearBaseline:
        from sklearn.linear_model import LogisticRegression

        mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        scale[~(scale > 0)] = 1.0
        z = np.nan_to_num((x - mean) / scale)
        fitted = LogisticRegression(C=0.1, max_iter=2000).fit(z, y)
        return cls(mean, scale, fitted.coef_[0], float(fitted.intercept_[0]))

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((x - self.mean) / self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))  # type: ignore[no-any-return]


def _usable(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.isfinite(r) & np.all(np.isfinite(x), axis=1)


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size and np.ptp(p) > 0 else 0.5
    return {"accuracy": round(float(np.mean((p > 0.5) == (y == 1))), 4), "auc": round(auc, 4),
            "brier": round(float(np.mean((p - y) ** 2)), 4)}


def _baselines(train_y: np.ndarray, train_last: np.ndarray, test_last: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Naive forecasts as probabilities fitted on the training window: the up-frequency
    (always-up's calibrated form) and P(up | the last move's direction)."""
    base = float(train_y.mean()) if train_y.size else 0.5
    up_after_up = float(train_y[train_last > 0].mean()) if np.any(train_last > 0) else base
    up_after_down = float(train_y[train_last <= 0].mean()) if np.any(train_last <= 0) else base
    # always-up predicts up with the base rate's confidence; accuracy counts it as "up"
    return {"always_up": np.full(n, max(base, 0.5 + 1e-9)),
            "last_direction": np.where(test_last > 0, up_after_up, up_after_down)}


def walk_forward_splits(rows: np.ndarray, horizon: int, folds: int, min_train: int
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold: consecutive test windows after ``min_train`` rows,
    each trained on the rows before it whose label ends before the window starts."""
    edges = np.linspace(min_train, rows.size, folds + 1).astype(int)
    splits = []
    for k in range(folds):
        test = rows[edges[k]:edges[k + 1]]
        train = rows[:edges[k]]
        splits.append((train[train + horizon < test[0]], test))  # the embargo
    return splits


def walk_forward(candles: Candles, horizon: int, folds: int = 5, min_train: int = 500) -> dict[str, Any]:
    """Out-of-sample scores pooled over ``folds`` consecutive test windows, each predicted by
    models fitted only on the bars before it (less an embargo of ``horizon`` bars)."""
    x, r = feature_matrix(candles), forward_return(candles, horizon)
    last = np.full(r.size, np.nan)
    last[horizon:] = np.log(candles.close[horizon:] / candles.close[:-horizon])
    rows = np.flatnonzero(_usable(x, r))
    if rows.size < min_train + folds * 50:
        raise ValueError(f"too little history: {rows.size} usable bars, need {min_train + folds * 50}")
    pooled: dict[str, list[np.ndarray]] = {"model": [], "linear": [], "always_up": [], "last_direction": []}
    truth: list[np.ndarray] = []
    for train, test in walk_forward_splits(rows, horizon, folds, min_train):
        ty = (r[train] > 0).astype(float)
        y = (r[test] > 0).astype(float)
        pooled["model"].append(_train_classifier(x[train], ty).predict(x[test]))
        pooled["linear"].append(LinearBaseline.fit(x[train], ty).probability(x[test]))
        for name, p in _baselines(ty, last[train], last[test], test.size).items():
            pooled[name].append(p)
        truth.append(y)
    y_all = np.concatenate(truth)
    result = {name: scores(np.concatenate(parts), y_all) for name, parts in pooled.items()}
    naive = ("always_up", "last_direction")
    result["beats_baselines"] = {
        metric: all((result["model"][metric] < result[b][metric]) if metric == "brier"
                    else (result["model"][metric] > result[b][metric]) for b in naive)
        for metric in ("accuracy", "auc", "brier")}
    result["test_bars"] = int(y_all.size)
    result["folds"] = folds
    return result


@dataclass
class DirectionModel:
    horizon: int
    classifier: Any
    quantiles: dict[float, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, candles: Candles, horizon: int, meta: dict[str, Any] | None = None) -> DirectionModel:
        x, r = feature_matrix(candles), forward_return(candles, horizon)
        keep = _usable(x, r)
        classifier = _train_classifier(x[keep], (r[keep] > 0).astype(float))
        quantiles = {q: _train_quantile(x[keep], r[keep], q) for q in QUANTILES}
        return cls(horizon, classifier, quantiles, {**(meta or {}), "trained_rows": int(keep.sum()),
                                                    "features": list(FEATURE_NAMES)})

    def predict(self, candles: Candles, at: int | None = None) -> Prediction | None:
        """The forecast made at bar ``at`` (the last by default) from bars up to it."""
        at = len(candles) - 1 if at is None else at
        row = feature_matrix(candles.head(at + 1))[-1:]
        if not np.all(np.isfinite(row)):
            return None
        low, mid, high = (float(self.quantiles[q].predict(row)[0]) for q in QUANTILES)
        return Prediction(float(self.classifier.predict(row)[0]), mid, (min(low, mid), max(high, mid)), at)

    def to_json(self) -> str:
        return json.dumps({"kind": "lightgbm_direction", "horizon": self.horizon, "features": list(FEATURE_NAMES),
                           "classifier": self.classifier.model_to_string(),
                           "quantiles": {str(q): b.model_to_string() for q, b in self.quantiles.items()},
                           "meta": self.meta})

    @classmethod
    def from_json(cls, text: str) -> DirectionModel:
        data = json.loads(text)
        if data.get("kind") != "lightgbm_direction" or data.get("features") != list(FEATURE_NAMES):
            raise ValueError("not a direction model for these features")
        lgb = _lgb()
        return cls(int(data["horizon"]), lgb.Booster(model_str=data["classifier"]),
                   {float(q): lgb.Booster(model_str=s) for q, s in data["quantiles"].items()}, data.get("meta", {}))
