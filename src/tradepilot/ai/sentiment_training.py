"""Fit and evaluate the sentiment model on labelled texts (``text,label`` CSV).

The split is fixed (stratified, seeded) so the held-out scores in docs/ai-evaluation.md
can be reproduced: ``tradepilot ai train sentiment --data FILE`` fits on the training part,
picks the regularisation by 5-fold cross-validation on it (macro-F1), reports the held-out
part next to the majority class, plain VADER and VADER with the finance lexicon, and writes
the model JSON.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tradepilot.ai.sentiment import (
    LABELS,
    VECTORIZER_OPTIONS,
    FinanceVader,
    SentimentModel,
    normalise,
    vader_label,
)

SPLIT_SEED = 13
C_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["label"] not in LABELS:
                raise ValueError(f"{path}: unknown label {row['label']!r}")
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels


def split(texts: list[str], labels: list[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train texts, held-out texts, train labels, held-out labels): 80 / 20, stratified."""
    from sklearn.model_selection import train_test_split

    return train_test_split(texts, labels, test_size=0.2, random_state=SPLIT_SEED, stratify=labels)  # type: ignore[no-any-return]


def _fit(texts: list[str], labels: list[str], c: float, vader: np.ndarray) -> SentimentModel:
    """``vader``: the finance-VADER features of ``texts`` (computed once: VADER is the slow part)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(**VECTORIZER_OPTIONS)
    words = vectorizer.fit_transform([normalise(t) for t in texts])
    x = hstack([words, csr_matrix(vader)]).tocsr()
    y = np.array([LABELS.index(label) for label in labels])
    fitted = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x, y)
    return SentimentModel(vectorizer.vocabulary_, vectorizer.idf_, fitted.coef_, fitted.intercept_, {"C": c})


def scores(predicted: list[str], truth: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": round(float(accuracy_score(truth, predicted)), 4),
            "macro_f1": round(float(f1_score(truth, predicted, labels=list(LABELS), average="macro")), 4)}


def train_sentiment_model(texts: list[str], labels: list[str]) -> SentimentModel:
    """Pick C by 5-fold cross-validated macro-F1 on these texts, then fit on all of them."""
    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(5, shuffle=True, random_state=SPLIT_SEED).split(texts, labels))
    vader = FinanceVader().features(texts)
    best_c, best = C_GRID[0], -1.0
    for c in C_GRID:
        f1 = []
        for train, test in folds:
            model = _fit([texts[i] for i in train], [labels[i] for i in train], c, vader[train])
            f1.append(scores([r.label for r in model.read([texts[i] for i in test])],
                             [labels[i] for i in test])["macro_f1"])
        if float(np.mean(f1)) > best:
            best_c, best = c, float(np.mean(f1))
    model = _fit(texts, labels, best_c, vader)
    model.meta.update({"cv_macro_f1": round(best, 4), "trained_on": len(texts)})
    return model


def evaluate(model: SentimentModel, texts: list[str], labels: list[str], train_labels: list[str]) -> dict[str, Any]:
    """Held-out scores of the model next to its baselines."""
    majority = Counter(train_labels).most_common(1)[0][0]
    plain, finance = FinanceVader(finance=False), FinanceVader()
    return {
        "held_out": len(texts),
        "majority class": scores([majority] * len(texts), labels),
        "VADER": scores([vader_label(plain.scores(t)["compound"]) for t in texts], labels),
        "VADER + finance lexicon": scores([vader_label(finance.scores(t)["compound"]) for t in texts], labels),
        "model": scores([r.label for r in model.read(texts)], labels),
    }
