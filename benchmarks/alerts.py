"""Price alerts per tick: the alert engine's sorted index next to a plain loop over all alerts.

100,000 active one-shot price alerts over 50 symbols — 40 % above / below, 30 % crosses, 30 %
percent change over 1m/5m/15m/1h windows — with thresholds spread around each symbol's price,
and a seeded random walk of trades (one tick a second, round-robin over the symbols). The engine
side is ``tradepilot.alerts.price_index.PriceAlertIndex`` (sorted thresholds per symbol and
condition, bisect + the k matches); the plain loop checks every alert on every tick, with the
same semantics (and the same per-(symbol, window) change computed once per tick, to be fair to
it). Both remove what fired. The first ticks of both are compared: they must fire the same alerts.

    python benchmarks/alerts.py            # 100,000 alerts; 10,000 ticks indexed, 200 looped
    python benchmarks/alerts.py --smoke    # 5,000 alerts; 1,000 and 50 ticks, for CI

Target (issue 10): the engine at least 100x faster per tick than the plain loop.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from tradepilot.alerts.price_index import HUNDRED, PriceAlertIndex, PriceRule

TARGET_RATIO = 100.0
WINDOWS = (60, 300, 900, 3600)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Tick:
    symbol: str
    price: Decimal
    at: float


def build(n_alerts: int, n_symbols: int, n_ticks: int, seed: int) -> tuple[list[PriceRule], list[Tick]]:
    rng = random.Random(seed)
    symbols = [f"S{i}/USDT" for i in range(n_symbols)]
    start = {s: Decimal(rng.randint(50, 50_000)) for s in symbols}
    rules = []
    for i in range(n_alerts):
        symbol = symbols[i % n_symbols]
        base = start[symbol]
        r = rng.random()
        if r < 0.4:
            condition = "above" if rng.random() < 0.5 else "below"
            level = base * Decimal(1 + (rng.uniform(0.02, 0.5) if condition == "above" else -rng.uniform(0.02, 0.5)))
            rules.append(PriceRule(f"a{i}", symbol, condition, level.quantize(CENT)))
        elif r < 0.7:
            level = base * Decimal(1 + rng.uniform(-0.5, 0.5))
            rules.append(PriceRule(f"a{i}", symbol, "crosses", level.quantize(CENT), rng.choice(("up", "down", "any"))))
        else:
            rules.append(PriceRule(f"a{i}", symbol, "percent_change", Decimal(rng.randint(2, 40)) / 2,
                                   rng.choice(("up", "down", "any")), rng.choice(WINDOWS)))
    ticks, price = [], dict(start)
    for t in range(n_ticks):
        symbol = symbols[t % n_symbols]
        price[symbol] = max(CENT, (price[symbol] * Decimal(1 + rng.gauss(0, 0.002))).quantize(CENT))
        ticks.append(Tick(symbol, price[symbol], float(t)))
    return rules, ticks


class PlainLoop:
    """Every alert checked on every tick."""

    def __init__(self, rules: list[PriceRule]) -> None:
        self.active = {rule.id: rule for rule in rules}
        self.last: dict[str, Decimal] = {}
        self.windows: dict[tuple[str, int], deque[tuple[float, Decimal]]] = {}

    def _change(self, symbol: str, seconds: int, at: float, price: Decimal) -> Decimal | None:
        prices = self.windows.setdefault((symbol, seconds), deque())
        prices.append((at, price))
        while len(prices) >= 2 and prices[1][0] <= at - seconds:
            prices.popleft()
        first_at, reference = prices[0]
        return None if first_at > at - seconds else (price - reference) * HUNDRED / reference

    def on_price(self, symbol: str, price: Decimal, at: float) -> list[str]:
        previous, self.last[symbol] = self.last.get(symbol), price
        changes = {s: self._change(symbol, s, at, price) for s in WINDOWS}
        fired = []
        for rule in self.active.values():
            if rule.symbol != symbol:
                continue
            c, t, d = rule.condition, rule.threshold, rule.direction
            if c == "above":
                hit = price >= t
            elif c == "below":
                hit = price <= t
            elif c == "crosses":
                hit = previous is not None and ((d != "down" and previous < t <= price)
                                                or (d != "up" and price <= t < previous))
            else:
                ch = changes[rule.window_seconds or 0]
                hit = ch is not None and ((d != "down" and ch > 0 and ch >= t) or (d != "up" and ch < 0 and -ch >= t))
            if hit:
                fired.append(rule.id)
        for rule_id in fired:
            del self.active[rule_id]
        return fired


def run_engine(rules: list[PriceRule], ticks: list[Tick]) -> tuple[float, int, list[list[str]]]:
    index = PriceAlertIndex()
    for rule in rules:
        index.add(rule)
    fired_total, log = 0, []
    gc.collect()
    started = time.perf_counter()
    for n, tick in enumerate(ticks):
        fired = list(dict.fromkeys(rule_id for rule_id, _ in index.on_price(tick.symbol, tick.price, tick.at)))
        for rule_id in fired:
            index.remove(rule_id)
        fired_total += len(fired)
        if n < 200:
            log.append(sorted(fired))
    return time.perf_counter() - started, fired_total, log


def run_loop(rules: list[PriceRule], ticks: list[Tick]) -> tuple[float, int, list[list[str]]]:
    loop = PlainLoop(rules)
    fired_total, log = 0, []
    gc.collect()
    started = time.perf_counter()
    for tick in ticks:
        fired = loop.on_price(tick.symbol, tick.price, tick.at)
        fired_total += len(fired)
        log.append(sorted(fired))
    return time.perf_counter() - started, fired_total, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--ticks", type=int, default=10_000, help="ticks through the engine")
    parser.add_argument("--loop-ticks", type=int, default=200, help="ticks through the plain loop")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="small and fast, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.alerts, args.ticks, args.loop_ticks = 5_000, 1_000, 50
    rules, ticks = build(args.alerts, args.symbols, max(args.ticks, args.loop_ticks), args.seed)
    engine_s, engine_fired, engine_log = run_engine(rules, ticks[:args.ticks])
    loop_s, loop_fired, loop_log = run_loop(rules, ticks[:args.loop_ticks])
    same = min(len(engine_log), len(loop_log))
    agree = engine_log[:same] == loop_log[:same]
    engine_us = engine_s / args.ticks * 1e6
    loop_us = loop_s / args.loop_ticks * 1e6
    ratio = loop_us / engine_us
    print(f"alerts: {args.alerts:,} active price alerts over {args.symbols} symbols "
          f"(40% above/below, 30% crosses, 30% percent change)")
    print(f"  engine (sorted index): {args.ticks:>6,} ticks  {args.ticks / engine_s:>12,.0f} ticks/s  "
          f"{engine_us:>10.2f} µs/tick  fired {engine_fired:,}")
    print(f"  plain loop:            {args.loop_ticks:>6,} ticks  {args.loop_ticks / loop_s:>12,.0f} ticks/s  "
          f"{loop_us:>10.2f} µs/tick  fired {loop_fired:,}")
    print(f"  engine is {ratio:,.0f}x faster per tick (target ≥ {TARGET_RATIO:.0f}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}); same alerts fired over the first {same} ticks: "
          f"{'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
