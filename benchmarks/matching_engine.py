"""Paper-exchange matching engine: limit orders entering books and matched by a trade stream.

A deterministic workload (seeded) on a few symbols: every symbol has an L2 market book of 20
levels a side around a price that random-walks with the trades. The stream interleaves

* N limit orders (gtc, both sides, 0.001–0.1 BTC): ~90 % rest 1–200 ticks away from the
  market, ~10 % cross the book and take liquidity as takers (the rest of those rests);
* one market trade per 4 orders (its price walks ±30 ticks), which fills the resting orders it
  reaches as makers, by price-time priority, bounded by the trade's volume;
* a new market book every 10 trades, centred on the last trade;
* cancels of 10 % of the orders, some time after they were placed (``--cancel-ratio``).

Orders are built before the clock starts (the engine's work is measured, not the caller's).
Two passes over the same stream: one untimed per call, for throughput (orders/s = N ÷ the
whole stream's wall time, trades, books and cancels included); one timing every call, for
per-operation latency percentiles.

    python benchmarks/matching_engine.py            # 200,000 orders, 3 rounds
    python benchmarks/matching_engine.py --smoke    # 10,000 orders, 1 round, for CI

Target (issue 5): at least 50,000 limit orders/s entering and matching a book, in process.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from tradepilot.market.types import OrderBook, Trade
from tradepilot.trading.engine import (
    Fill,
    MatchingEngine,
    Order,
    OrderType,
    Side,
    UnknownOrderError,
)

TARGET = 50_000
TICK = Decimal("0.01")
START = datetime(2024, 8, 8, 12, tzinfo=timezone.utc)


@dataclass(slots=True)
class Op:
    kind: str  # place | trade | book | cancel
    payload: object
    ts: datetime


def build_stream(n_orders: int, symbols: int, cancel_ratio: float, seed: int) -> list[Op]:
    rng = random.Random(seed)
    names = [f"S{i}/USDT" for i in range(symbols)]
    ticks = {name: 6_000_000 + rng.randrange(-1000, 1000) for name in names}  # 60000.00 in ticks
    ts = START
    ops: list[Op] = []
    trades = 0
    pending_cancels: list[tuple[int, str]] = []

    def book(name: str) -> OrderBook:
        mid = ticks[name]
        bids = tuple((Decimal(mid - 1 - i) * TICK, Decimal(rng.randrange(1, 200)) / 100)
                     for i in range(20))
        asks = tuple((Decimal(mid + 1 + i) * TICK, Decimal(rng.randrange(1, 200)) / 100)
                     for i in range(20))
        return OrderBook("bench", name, trades, bids, asks, ts)

    for name in names:
        ops.append(Op("book", book(name), ts))
    for i in range(n_orders):
        ts += timedelta(microseconds=250)
        name = names[i % symbols]
        mid = ticks[name]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        if rng.random() < 0.1:
            offset = -rng.randrange(1, 6)  # crosses: takes up to 5 levels, rests the rest
        else:
            offset = rng.randrange(1, 200)
        price_ticks = mid - offset if side == Side.BUY else mid + offset
        order = Order(f"o{i}", f"acct{rng.randrange(100)}", name, side, OrderType.LIMIT,
                      quantity=Decimal(rng.randrange(1, 100)) / 1000, price=Decimal(price_ticks) * TICK)
        ops.append(Op("place", order, ts))
        if rng.random() < cancel_ratio:
            pending_cancels.append((i + rng.randrange(10, 2000), order.id))
        while pending_cancels and pending_cancels[0][0] <= i:
            ops.append(Op("cancel", pending_cancels.pop(0)[1], ts))
            pending_cancels.sort()
        if i % 4 == 3:
            trade_symbol = names[trades % symbols]
            ticks[trade_symbol] += rng.randrange(-30, 31)
            price = Decimal(ticks[trade_symbol]) * TICK
            trades += 1
            ops.append(Op("trade", Trade("bench", trade_symbol, f"t{trades}", price,
                                         Decimal(rng.randrange(1, 500)) / 1000,
                                         "buy" if rng.random() < 0.5 else "sell", ts), ts))
            if trades % 10 == 0:
                ops.append(Op("book", book(trade_symbol), ts))
    return ops


def fresh(ops: list[Op]) -> list[Op]:
    """The orders are mutated by the engine: each pass gets new ones."""
    out = []
    for op in ops:
        if op.kind == "place":
            o = op.payload
            assert isinstance(o, Order)
            op = Op("place", Order(o.id, o.account_id, o.symbol, o.side, o.type, quantity=o.quantity,
                                   price=o.price), op.ts)
        out.append(op)
    return out


def run(ops: list[Op], timed: bool) -> tuple[float, dict[str, list[int]], int, int, int]:
    engine = MatchingEngine()
    lat: dict[str, list[int]] = {"place": [], "trade": [], "book": [], "cancel": []}
    fills = maker = events = 0
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for op in ops:
        kind, payload = op.kind, op.payload
        t0 = clock() if timed else 0
        if kind == "place":
            out = engine.place(payload, op.ts)  # type: ignore[arg-type]
        elif kind == "trade":
            out = engine.on_trade(payload)  # type: ignore[arg-type]
        elif kind == "book":
            out = engine.on_book(payload)  # type: ignore[arg-type]
        else:
            try:
                out = engine.cancel(payload, op.ts)  # type: ignore[arg-type]
            except UnknownOrderError:  # filled or already closed
                out = []
        if timed:
            lat[kind].append(clock() - t0)
            for e in out:
                if isinstance(e, Fill):
                    fills += 1
                    maker += e.liquidity == "maker"
        events += len(out)
    return time.perf_counter() - started, lat, fills, maker, events


def pct(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    parser.add_argument("--orders", type=int, default=None)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--cancel-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    n = args.orders or (10_000 if args.smoke else 200_000)
    rounds = args.rounds or (1 if args.smoke else 3)

    ops = build_stream(n, args.symbols, args.cancel_ratio, args.seed)
    counts = {k: sum(1 for op in ops if op.kind == k) for k in ("place", "trade", "book", "cancel")}
    print(f"matching_engine: {counts['place']:,} limit orders, {counts['trade']:,} trades, "
          f"{counts['book']:,} books, {counts['cancel']:,} cancels on {args.symbols} symbols; "
          f"{rounds} round(s), Python {sys.version.split()[0]}")

    walls = []
    for _ in range(rounds):
        stream = fresh(ops)
        gc.collect()
        wall, _, _, _, events = run(stream, timed=False)
        walls.append(wall)
    stream = fresh(ops)
    gc.collect()
    _, lat, fills, maker, events = run(stream, timed=True)

    wall = statistics.median(walls)
    rate = n / wall
    print(f"  throughput: {rate:,.0f} orders/s (median of {rounds}; best {n / min(walls):,.0f}), "
          f"stream {wall:.3f} s, {counts['trade'] / wall:,.0f} trades/s")
    print(f"  {fills:,} fills ({maker:,} maker, {fills - maker:,} taker), {events:,} events")
    print("  latency per call (µs):      p50      p90      p99    p99.9      max")
    for kind in ("place", "trade", "book", "cancel"):
        values = lat[kind]
        if values:
            print(f"    {kind:<10} {len(values):>10,}  " + "  ".join(
                f"{pct(values, q):7.1f}" for q in (0.5, 0.9, 0.99, 0.999)) + f"  {max(values) / 1000:7.1f}")
    verdict = "MET" if rate >= TARGET else "MISSED"
    print(f"  target ≥ {TARGET:,} orders/s: {verdict} ({rate / TARGET:.2f}x)")
    if args.smoke:
        print("  (smoke run: figures too short to quote)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
