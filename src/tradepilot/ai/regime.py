"""The regime classifier: trending, ranging or volatile, with probabilities and the facts.

A multinomial logistic regression (scikit-learn) over the scale-free window statistics of
``regime_features``, fitted on labelled simulated regimes (``regime_simulation``) — labels
real market data does not come with. The fitted coefficients ship as JSON next to this
module (a safe format: nothing is unpickled) and ``train_regime_model`` reproduces them;
``tradepilot ai train regime`` rewrites the file. Its measured accuracy on held-out
samples is stored with it and reported beside every answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradepilot.ai.regime_features import FEATURES, HISTORY, WINDOW, window_features
from tradepilot.ai.regime_simulation import REGIMES, labelled_sample

SHIPPED = Path(__file__).with_name("regime_model.json")


@dataclass(frozen=True)
class RegimeReading:
    regime: str
    probabilities: dict[str, float]
    features: dict[str, float]


@dataclass(frozen=True)
class RegimeModel:
    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray
    meta: dict[str, Any]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(features) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def classify(self, log_close: np.ndarray, end: int | None = None) -> RegimeReading | None:
        """The regime of the window ending at ``end`` (the last bar by default); None when
        there are too few bars or the market did not move."""
        end = log_close.size - 1 if end is None else end
        features = window_features(log_close, end)
        if not np.all(np.isfinite(features)):
            return None
        p = self.probabilities(features)[0]
        return RegimeReading(self.classes[int(np.argmax(p))], {c: float(v) for c, v in zip(self.classes, p)},
                             {name: float(v) for name, v in zip(FEATURES, features)})

    def to_json(self) -> str:
        return json.dumps({"kind": "multinomial_logistic_regression", "classes": list(self.classes),
                           "features": list(FEATURES), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                           "coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "meta": self.meta},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> RegimeModel:
        data = json.loads(text)
        if data.get("kind") != "multinomial_logistic_regression" or data.get("features") != list(FEATURES):
            raise ValueError("not a regime model for these features")
        return cls(tuple(data["classes"]), np.array(data["mean"]), np.array(data["scale"]), np.array(data["coef"]),
                   np.array(data["intercept"]), data.get("meta", {}))


def load_regime_model(path: Path = SHIPPED) -> RegimeModel:
    return RegimeModel.from_json(path.read_text())


def simulated_dataset(samples_per_regime: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, regime in enumerate(REGIMES):
        for _ in range(samples_per_regime):
            rows.append(window_features(labelled_sample(regime, rng), HISTORY + WINDOW - 1))
            labels.append(label)
    return np.array(rows), np.array(labels)


def train_regime_model(samples_per_regime: int = 1500, seed: int = 7) -> RegimeModel:
    """Fit on simulated regimes; score on a held-out set drawn with another seed."""
    from sklearn.linear_model import LogisticRegression

    x, y = simulated_dataset(samples_per_regime, seed)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    fitted = LogisticRegression(max_iter=2000, C=1.0).fit((x - mean) / scale, y)
    model = RegimeModel(REGIMES, mean, scale, fitted.coef_, fitted.intercept_, {})
    hx, hy = simulated_dataset(max(100, samples_per_regime // 5), seed + 1)
    accuracy = float(np.mean(np.argmax(model.probabilities(hx), axis=1) == hy))
    meta = {"trained_on": "simulated regimes (tradepilot.ai.regime_simulation)", "seed": seed,
            "samples_per_regime": samples_per_regime, "window": WINDOW, "history": HISTORY,
            "held_out_accuracy": round(accuracy, 4)}
    return RegimeModel(model.classes, mean, scale, model.coef, model.intercept, meta)
