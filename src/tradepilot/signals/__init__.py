"""Trading signals: stored ideas (symbol, side, entry, stop, target, horizon) followed against
the market, scored afterwards next to a random-entry baseline (docs/signals.md)."""
