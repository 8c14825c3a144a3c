"""``tradepilot ai``: fit the built-in models and reproduce docs/ai-evaluation.md.

    tradepilot ai evaluate --csv ../shared/data/market/coinbase_btc_usd_1h/BTC_USD-1h.csv --horizon 1 --horizon 4
    tradepilot ai train sentiment --data ../shared/data/sentiment/twitter_financial_news_sentiment_train.csv
    tradepilot ai train regime
    tradepilot ai train direction --symbol BTC/USDT --timeframe 1h --horizon 1

``evaluate`` prints, per file and horizon, the walk-forward out-of-sample scores of the
direction model next to the linear and naive baselines (a Markdown table). ``train``
rewrites a shipped model file and prints its held-out scores; ``train direction`` trains the
direction model of a symbol from the candle store into the model registry of the data
directory (what the ``ai.train_direction`` job does), for each ``--symbol`` (default: the
configured ones), ``--timeframe`` and ``--horizon``.
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
    p.add_argument("--symbol", action="append", default=[], help="direction: a stored symbol (repeatable)")
    p.add_argument("--timeframe", action="append", default=[], help="direction: 1h, 1d, … (repeatable)")


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
    return _train_direction(args)


def _train_direction(args: argparse.Namespace) -> int:
    import sys
    from datetime import UTC, datetime

    from tradepilot.ai.direction_job import configured_targets
    from tradepilot.ai.direction_registry import DirectionRegistry
    from tradepilot.ai.direction_training import InsufficientHistory, Target, train_direction
    from tradepilot.config import load_settings
    from tradepilot.market.setup import configured_venue
    from tradepilot.market.store import CandleStore

    settings = load_settings()
    store = CandleStore.for_settings(settings, configured_venue(settings))
    registry = DirectionRegistry.for_settings(settings)
    configured = configured_targets(settings)
    symbols = args.symbol or list(dict.fromkeys(t.symbol for t in configured))
    timeframes = args.timeframe or list(dict.fromkeys(t.timeframe for t in configured))
    horizons = args.horizon or list(dict.fromkeys(t.horizon for t in configured))
    failed = 0
    for target in (Target(s, tf, h) for s in symbols for tf in timeframes for h in horizons):
        try:
            meta = train_direction(store, registry, target, datetime.now(UTC))
        except (InsufficientHistory, ValueError) as exc:
            print(f"{target.symbol} {target.timeframe} h{target.horizon}: {exc}", file=sys.stderr)
            failed += 1
            continue
        key = registry.key(store.venue, target.symbol, target.timeframe, target.horizon)
        print(json.dumps({"model": str(registry.path(key)), **{k: meta[k] for k in (
            "symbol", "timeframe", "horizon", "bars", "window", "trained_at", "scores")}}, indent=1))
    return 1 if failed else 0
