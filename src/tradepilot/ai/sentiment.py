"""Financial sentiment of short texts (headlines, posts): bullish, neutral or bearish.

Two layers. ``FinanceVader`` is VADER (its lexicon ships in the ``vaderSentiment`` wheel)
with a finance lexicon on top — VADER alone reads "cuts to Neutral" or "misses estimates"
as neutral. ``SentimentModel`` is a logistic regression over word and bigram TF-IDF
features plus the finance-VADER scores, fitted offline on labelled finance-news tweets
(``tradepilot ai train sentiment``; docs/ai-evaluation.md has its scores next to the
majority class and plain VADER). It ships as JSON — vocabulary, idf and coefficients —
so nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

LABELS = ("bearish", "neutral", "bullish")
SHIPPED = Path(__file__).with_name("sentiment_model.json")

# Valences on VADER's -4..4 scale for words whose meaning in markets VADER does not know.
FINANCE_LEXICON: dict[str, float] = {
    "bullish": 2.5, "bearish": -2.5, "bull": 1.5, "bear": -1.5, "rally": 2.0, "rallies": 2.0, "rallied": 2.0,
    "surge": 2.0, "surges": 2.0, "surged": 2.0, "soar": 2.2, "soars": 2.2, "soared": 2.2, "jump": 1.5,
    "jumps": 1.5, "jumped": 1.5, "gain": 1.5, "gains": 1.5, "gained": 1.5, "rise": 1.2, "rises": 1.2,
    "rose": 1.2, "climb": 1.2, "climbs": 1.2, "climbed": 1.2, "rebound": 1.5, "rebounds": 1.5, "beat": 1.8,
    "beats": 1.8, "tops": 1.5, "upgrade": 2.0, "upgrades": 2.0, "upgraded": 2.0, "outperform": 2.0,
    "overweight": 1.5, "buy": 1.0, "raises": 1.2, "raised": 1.2, "record": 1.0, "profit": 1.2, "profits": 1.2,
    "growth": 1.2, "breakout": 1.5, "accumulate": 1.0, "dividend": 0.8, "buyback": 1.2, "recovery": 1.5,
    "plunge": -2.5, "plunges": -2.5, "plunged": -2.5, "tumble": -2.2, "tumbles": -2.2, "tumbled": -2.2,
    "slump": -2.2, "slumps": -2.2, "slumped": -2.2, "sink": -1.8, "sinks": -1.8, "sank": -1.8, "drop": -1.5,
    "drops": -1.5, "dropped": -1.5, "fall": -1.5, "falls": -1.5, "fell": -1.5, "slide": -1.5,
    "slides": -1.5, "slid": -1.5, "decline": -1.5, "declines": -1.5, "declined": -1.5, "miss": -1.8,
    "misses": -1.8, "missed": -1.8, "downgrade": -2.0, "downgrades": -2.0, "downgraded": -2.0,
    "underperform": -2.0, "underweight": -1.5, "sell": -1.0, "cut": -1.5, "cuts": -1.5, "lowers": -1.2,
    "lowered": -1.2, "loss": -1.5, "losses": -1.5, "selloff": -2.0, "sell-off": -2.0, "crash": -3.0,
    "crashes": -3.0, "bankruptcy": -3.0, "default": -2.0, "layoffs": -2.0, "recession": -2.0, "warns": -1.5,
    "warning": -1.5, "probe": -1.5, "lawsuit": -1.5, "short": -1.0, "weak": -1.5, "weakness": -1.5,
    "volatile": -0.5, "inflation": -0.8, "headwinds": -1.5, "tailwinds": 1.5,
}
_TOKENS = re.compile(r"https?://\S+|\$[a-z]+")  # links and cashtags carry no sentiment of their own


def normalise(text: str) -> str:
    return _TOKENS.sub(" ", text.lower())


class FinanceVader:
    """VADER with the finance lexicon (or, ``finance=False``, exactly as it ships): scores
    ``neg``, ``neu``, ``pos``, ``compound``."""

    def __init__(self, *, finance: bool = True) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        if finance:
            self._analyzer.lexicon.update(FINANCE_LEXICON)

    def scores(self, text: str) -> dict[str, float]:
        return self._analyzer.polarity_scores(normalise(text))  # type: ignore[no-any-return]

    def features(self, texts: list[str]) -> np.ndarray:
        rows = [self.scores(t) for t in texts]
        return np.array([[r["neg"], r["neu"], r["pos"], r["compound"]] for r in rows])


def vader_label(compound: float, threshold: float = 0.05) -> str:
    """VADER's own rule: compound above +0.05 positive, below -0.05 negative."""
    return "bullish" if compound >= threshold else "bearish" if compound <= -threshold else "neutral"


@dataclass(frozen=True)
class SentimentReading:
    label: str
    score: float  # P(bullish) - P(bearish), -1..1
    probabilities: dict[str, float]


class SentimentModel:
    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 meta: dict[str, Any]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(**VECTORIZER_OPTIONS, vocabulary=vocabulary)
        self.vectorizer.idf_ = idf
        self.coef, self.intercept, self.meta = coef, intercept, meta
        self.vader = FinanceVader()

    def features(self, texts: list[str]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        words = self.vectorizer.transform([normalise(t) for t in texts])
        return hstack([words, csr_matrix(self.vader.features(texts))]).tocsr()

    def probabilities(self, texts: list[str]) -> np.ndarray:
        logits = self.features(texts) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def read(self, texts: list[str]) -> list[SentimentReading]:
        readings = []
        for row in self.probabilities(texts):
            p = dict(zip(LABELS, (float(v) for v in row)))
            readings.append(SentimentReading(max(p, key=p.__getitem__), p["bullish"] - p["bearish"], p))
        return readings

    def to_json(self) -> str:
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        return json.dumps({"kind": "tfidf_vader_logistic_regression", "labels": list(LABELS),
                           "vocabulary": vocabulary, "idf": [round(float(v), 6) for v in self.vectorizer.idf_],
                           "coef": [[round(float(v), 6) for v in row] for row in self.coef],
                           "intercept": [float(v) for v in self.intercept], "meta": self.meta},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SentimentModel:
        data = json.loads(text)
        if data.get("kind") != "tfidf_vader_logistic_regression" or data.get("labels") != list(LABELS):
            raise ValueError("not a sentiment model of this kind")
        return cls(data["vocabulary"], np.array(data["idf"]), np.array(data["coef"]), np.array(data["intercept"]),
                   data.get("meta", {}))


VECTORIZER_OPTIONS: dict[str, Any] = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True,
                                      "token_pattern": r"(?u)\b[\w'-]+\b"}


def load_sentiment_model(path: Path = SHIPPED) -> SentimentModel:
    return SentimentModel.from_json(path.read_text())
