"""Candle store: loading 1,000,000 1m bars of one symbol and a 1-day range query, next to a
plain pyarrow read of the same Parquet files in the same run.

The bars are the simulated market's own history (exact decimals, as the store keeps them),
written once through ``CandleStore.write``. Then, interleaved over rounds:

* full load — ``CandleStore.read(symbol, "1m")`` (every partition → one ``BarFrame`` of
  exact scaled integers) vs ``pyarrow.parquet.read_table(<the symbol's 1m folder>)``;
* 1-day range — ``CandleStore.read(symbol, "1m", start, start + 1 day)`` for random days
  vs ``pyarrow.parquet.read_table(folder, filters=[open_time >= start, open_time < end])``
  (pyarrow's own row-group pruning).

    python benchmarks/candles_query.py            # 1,000,000 bars
    python benchmarks/candles_query.py --smoke    # 100,000 bars, a few rounds, for CI

Target: the store within 2x of the plain pyarrow read for both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from tradepilot.market.feeds.sim_model import ReturnModel, bars_from_returns, history_rng, spec_for
from tradepilot.market.frame import from_ms, to_ms
from tradepilot.market.store import CandleStore

SYMBOL = "BTC/USDT"


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI)")
    parser.add_argument("--bars", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    bars = args.bars or (100_000 if args.smoke else 1_000_000)
    rounds = args.rounds or (3 if args.smoke else 7)
    queries = 20 if args.smoke else 100

    spec = spec_for(SYMBOL)
    start = to_ms(datetime(2023, 1, 1, tzinfo=timezone.utc))
    rng = history_rng(1, 0, 0)
    model = ReturnModel([spec])
    returns, sigma, _ = model.simulate(bars, rng, model.initial_state(rng))
    frame = bars_from_returns(spec, start, returns[0], sigma[0], rng)

    with tempfile.TemporaryDirectory() as tmp:
        store = CandleStore(Path(tmp), "bench")
        write_s = timed(lambda: store.write(SYMBOL, "1m", frame))
        folder = store.partitions(SYMBOL, "1m")[0].path.parent
        files = len(store.partitions(SYMBOL, "1m"))
        print(f"candles_query: {bars:,} 1m bars of {SYMBOL} in {files} Parquet files "
              f"({sum(p.stat().st_size for p in folder.glob('*.parquet')) / 1e6:.1f} MB), written in {write_s:.2f} s")

        loaded = store.read(SYMBOL, "1m")
        assert len(loaded) == bars and (loaded.close == frame.close).all()
        assert pq.read_table(folder).num_rows == bars

        days = (bars - 1440) // 1440
        rand = random.Random(7)
        starts = [from_ms(start) + timedelta(days=rand.randrange(days)) for _ in range(queries)]

        full_store, full_arrow, day_store, day_arrow = [], [], [], []
        for _ in range(rounds):
            full_store.append(timed(lambda: store.read(SYMBOL, "1m")))
            full_arrow.append(timed(lambda: pq.read_table(folder)))
            for s in starts:
                e = s + timedelta(days=1)
                day_store.append(timed(lambda s=s, e=e: store.read(SYMBOL, "1m", s, e)))
                day_arrow.append(timed(lambda s=s, e=e: pq.read_table(
                    folder, filters=[("open_time", ">=", s), ("open_time", "<", e)])))
        check = store.read(SYMBOL, "1m", starts[0], starts[0] + timedelta(days=1))
        assert len(check) == 1440

    def row(name: str, ours: list[float], theirs: list[float]) -> float:
        a, b = statistics.median(ours), statistics.median(theirs)
        ratio = a / b
        print(f"  {name:<24} store {a * 1000:9.2f} ms   pyarrow {b * 1000:9.2f} ms   ratio {ratio:5.2f}x"
              f"   {'OK' if ratio <= 2 else 'SLOWER THAN TARGET'}")
        return ratio

    print(f"median of {rounds} rounds (range: {queries} random days per round)")
    ratios = [row(f"load {bars:,} bars", full_store, full_arrow), row("1-day range (1,440 bars)", day_store, day_arrow)]
    print(f"target: within 2x of pyarrow -> {'met' if max(ratios) <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
