"""``tradepilot ai``: fit the built-in models and reproduce docs/ai-evaluation.md.

    tradepilot ai evaluate --csv ../shared/data/market/coinbase_btc_usd_1h/BTC_USD-1h.csv --horizon 1 --horizon 4
    tradepilot ai train sentiment --data ../shared/data/sentiment/twitter_financial_news_sentiment_train.csv
    tradepilot ai train regime

``evaluate`` prints, per file and horizon, the walk-forward out-of-sample scores of the
direction model next to the linear and naive baselines (a Markdown table). ``train``
rewrites a shipped model file and prints its held-out scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tradepilot.cli import command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["evaluate", "train"])
    p.add_argument("model", nargs="?", choices=["direction", "sentiment", "regime"], default="direction")
    p.add_argument("--csv", type=Path, action="append", default=[], help="candles (timestamp,open,high,low,close,volume)")
    p.add_argument("--horizon", type=int, action="append", default=[], help="bars ahead (repeatable; default 1)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--data", type=Path, default=None, help="labelled texts (text,label) for the sentiment model")
    p.add_argument("--out", type=Path, default=None, help="where to write the model (default: the shipped file)")


def evaluation_table(paths: list[Path], horizons: list[int], folds: int) -> str:
    from tradepilot.ai.datasets import read_candles_csv
    from tradepilot.ai.direction import walk_forward

    lines = ["| data | horizon | test bars | forecaster | accuracy | AUC | Brier |", "|---|---|---|---|---|---|---|"]
    for path in paths:
        candles = read_candles_csv(path)
        for horizon in horizons:
            result = walk_forward(candles, horizon, folds=folds, min_train=max(300, int(0.4 * len(candles))))
            beats = result["beats_baselines"]
            for name in ("model", "linear", "always_up", "last_direction"):
                s = result[name]
                label = {"model": "LightGBM", "linear": "logistic (linear)", "always_up": "always up",
                         "last_direction": "last direction"}[name]
                marks = {m: "" if name != "model" else (" ✓" if beats[m] else " ✗") for m in ("accuracy", "auc", "brier")}
                lines.append(f"| {path.stem} | {horizon} | {result['test_bars']} | {label} | {s['accuracy']:.4f}"
                             f"{marks['accuracy']} | {s['auc']:.4f}{marks['auc']} | {s['brier']:.4f}{marks['brier']} |")
    return "\n".join(lines)


@command("ai", "fit the built-in AI models or reproduce their evaluation", _arguments)
def _ai(args: argparse.Namespace) -> int:
    if args.action == "evaluate":
        if not args.csv:
            raise SystemExit("tradepilot ai evaluate: give at least one --csv")
        print(evaluation_table(args.csv, args.horizon or [1], args.folds))
        return 0
    if args.model == "regime":
        from tradepilot.ai.regime import SHIPPED, train_regime_model

        regime = train_regime_model()
        (args.out or SHIPPED).write_text(regime.to_json() + "\n")
        print(json.dumps(regime.meta, indent=1))
        return 0
    if args.model == "sentiment":
        if args.data is None:
            raise SystemExit("tradepilot ai train sentiment: give --data (a text,label CSV)")
        from tradepilot.ai.sentiment import SHIPPED as SENTIMENT
        from tradepilot.ai.sentiment_training import (
            evaluate,
            read_labelled,
            split,
            train_sentiment_model,
        )

        texts, labels = read_labelled(args.data)
        train_texts, test_texts, train_labels, test_labels = split(texts, labels)
        sentiment = train_sentiment_model(train_texts, train_labels)
        sentiment.meta["held_out"] = evaluate(sentiment, test_texts, test_labels, train_labels)
        (args.out or SENTIMENT).write_text(sentiment.to_json())
        print(json.dumps(sentiment.meta, indent=1))
        return 0
    raise SystemExit("direction models are trained per symbol by the platform's training job")
