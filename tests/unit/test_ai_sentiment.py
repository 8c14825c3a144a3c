"""The sentiment model against its baselines on the held-out split of the labelled tweets.

``tests/data/sentiment_heldout.csv`` is that split (the 20% ``split`` keeps out of
training): "Twitter Financial News Sentiment" by zeroshot (MIT), from
umaima-aman/Twee_Sentiment_Analysis-DeepLearning; not modified.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tradepilot.ai.sentiment import FinanceVader, SentimentModel, load_sentiment_model, vader_label
from tradepilot.ai.sentiment_training import evaluate, read_labelled, scores, train_sentiment_model

HELD_OUT = Path(__file__).parents[1] / "data" / "sentiment_heldout.csv"


def test_the_shipped_model_beats_the_majority_class_and_vader_on_held_out_tweets() -> None:
    texts, labels = read_labelled(HELD_OUT)
    model = load_sentiment_model()
    report = evaluate(model, texts, labels, train_labels=labels)
    assert report["model"]["accuracy"] >= 0.78 and report["model"]["macro_f1"] >= 0.7, report
    for baseline in ("majority class", "VADER", "VADER + finance lexicon"):
        assert report["model"]["macro_f1"] > report[baseline]["macro_f1"] + 0.2, report
    assert report["model"] == model.meta["held_out"]["model"]  # the shipped figures are these


def test_the_finance_lexicon_reads_market_words_plain_vader_misses() -> None:
    plain, finance = FinanceVader(finance=False), FinanceVader()
    for text, label in (("$XYZ downgraded to underweight, shares plunge", "bearish"),
                        ("Analysts upgrade $ABC after earnings beat, stock rallies", "bullish")):
        assert vader_label(finance.scores(text)["compound"]) == label
    assert vader_label(plain.scores("$XYZ downgraded to underweight")["compound"]) == "neutral"


def test_readings_carry_probabilities_and_a_signed_score() -> None:
    readings = load_sentiment_model().read(["Stocks plunge as recession fears grow",
                                            "Shares soar to a record after blowout earnings",
                                            "The company will report results on Tuesday"])
    assert [r.label for r in readings] == ["bearish", "bullish", "neutral"]
    assert readings[0].score < 0 < readings[1].score
    for r in readings:
        assert sum(r.probabilities.values()) == pytest.approx(1.0)


def test_training_on_a_small_sample_learns_and_the_model_survives_json() -> None:
    texts, labels = read_labelled(HELD_OUT)
    model = train_sentiment_model(texts[:1200], labels[:1200])
    learnt = scores([r.label for r in model.read(texts[1200:])], labels[1200:])
    assert learnt["macro_f1"] > 0.45  # from 1,200 tweets: well above the majority class's 0.26
    restored = SentimentModel.from_json(model.to_json())
    assert [r.label for r in restored.read(texts[1200:1300])] == [r.label for r in model.read(texts[1200:1300])]
    with pytest.raises(ValueError):
        SentimentModel.from_json('{"kind": "pickle"}')
