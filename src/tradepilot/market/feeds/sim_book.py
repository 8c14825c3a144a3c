"""The simulated venue's L2 order book for one symbol, and the trades that move it.

Everything is in integers (prices in ticks, quantities in steps), so the book is always on
the instrument's grids. The book follows the mid price chosen by the price process: when
the mid rises, buyers take every ask below the new best ask (one trade per level, each at
that level's price, consuming its whole queue) and new bids appear underneath; the reverse
when it falls. On top of that come small trades at the touch that eat into the best queue
without clearing it, and queue changes (orders added and cancelled) across the depth.
Bids stay strictly below asks at all times.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np

from tradepilot.market.feeds.sim_model import SymbolSpec
from tradepilot.market.types import Level, Side

KEEP_LEVELS = 80  # levels kept per side (50 are published)
LevelList = list[list[int]]  # [[price_ticks, qty_steps], ...]


class SimBook:
    def __init__(self, spec: SymbolSpec, mid_ticks: float, tick_sigma: float, rng: np.random.Generator) -> None:
        """``tick_sigma``: the typical mid move per tick, in ticks (sets the level spacing)."""
        self.spec = spec
        self.tick = spec.tick_size
        self.step = spec.step_size
        self.gap = max(1.0, 0.5 * tick_sigma)  # mean distance between levels, in ticks
        qty = spec.volume_per_minute / max(1.0, 60.0 * tick_sigma / self.gap) / 2
        self.level_steps = max(1.0, qty / float(self.step))  # mean queue of a level, in steps
        # the book makes many small draws: Python's generator (seeded from the feed's) is far
        # cheaper per scalar than numpy's
        self.rng = random.Random(int(rng.integers(0, 2**63)))
        self._prices: dict[int, Decimal] = {}
        self._quantities: dict[int, Decimal] = {}
        self.bids: LevelList = []
        self.asks: LevelList = []
        self._reset(mid_ticks)

    # -- construction ---------------------------------------------------------------------

    def _spread(self) -> int:
        return 1 + poisson(self.rng, 0.4)

    def _qty(self, depth: int = 0) -> int:
        return max(1, int(self.level_steps * (1 + 0.03 * depth) * self.rng.lognormvariate(0.0, 0.6)))

    def _reset(self, mid: float) -> None:
        best_bid = max(1, int(math.floor(mid - self._spread() / 2 + 0.5)))
        self.bids = [[best_bid, self._qty()]]
        self.asks = [[best_bid + self._spread(), self._qty()]]
        self._extend()

    def _next_gap(self, near_top: bool) -> int:
        mean = self.gap / 4 if near_top else self.gap
        return 1 + int(self.rng.expovariate(1 / mean) if mean > 1 else 0)

    def _extend(self) -> None:
        while len(self.bids) < KEEP_LEVELS:
            price = self.bids[-1][0] - self._next_gap(len(self.bids) < 5)
            if price < 1:
                break
            self.bids.append([price, self._qty(len(self.bids))])
        while len(self.asks) < KEEP_LEVELS:
            self.asks.append([self.asks[-1][0] + self._next_gap(len(self.asks) < 5), self._qty(len(self.asks))])
        del self.bids[KEEP_LEVELS:]
        del self.asks[KEEP_LEVELS:]

    # -- one tick -------------------------------------------------------------------------

    def move_to(self, mid: float) -> list[tuple[Side, int, int]]:
        """Re-centre the book on ``mid`` (ticks); the trades that doing so takes."""
        trades: list[tuple[Side, int, int]] = []
        spread = self._spread()
        target_bid = max(1, int(math.floor(mid - spread / 2 + 0.5)))
        target_ask = target_bid + spread
        # buyers lift every ask below the new best ask; sellers hit every bid above the new best bid
        while self.asks and self.asks[0][0] < target_ask:
            price, qty = self.asks.pop(0)
            trades.append(("buy", price, qty))
        while self.bids and self.bids[0][0] > target_bid:
            price, qty = self.bids.pop(0)
            trades.append(("sell", price, qty))
        # drop resting orders that would now cross, then add the new touch
        self.bids = [lv for lv in self.bids if lv[0] < target_ask]
        self.asks = [lv for lv in self.asks if lv[0] > target_bid]
        if not self.bids or self.bids[0][0] < target_bid:
            self.bids.insert(0, [target_bid, self._qty()])
        if not self.asks or self.asks[0][0] > target_ask:
            self.asks.insert(0, [target_ask, self._qty()])
        # liquidity refills the gap the move left behind
        self._fill_inside(self.bids, -1)
        self._fill_inside(self.asks, +1)
        self._extend()
        return trades

    def _fill_inside(self, side: LevelList, direction: int) -> None:
        """Add levels where the book is emptier than usual just behind the touch."""
        i = 0
        while i < min(len(side) - 1, 8):
            here, there = side[i][0], side[i + 1][0]
            distance = abs(there - here)
            if distance > 2 * self.gap:
                offset = min(self._next_gap(False), distance - 1)
                side.insert(i + 1, [here + direction * offset, self._qty(i + 1)])
            i += 1

    def touch_trades(self, count: int) -> list[tuple[Side, int, int]]:
        """Small trades at the best bid or ask; each leaves part of the queue."""
        trades: list[tuple[Side, int, int]] = []
        for _ in range(count):
            side: Side = "buy" if self.rng.random() < 0.5 else "sell"
            book = self.asks if side == "buy" else self.bids
            if not book or book[0][1] < 2:
                continue
            qty = max(1, min(book[0][1] - 1, int(self.level_steps * self.rng.expovariate(4.0))))
            book[0][1] -= qty
            trades.append((side, book[0][0], qty))
        return trades

    def churn(self) -> None:
        """Queue changes: orders added to and cancelled from random levels."""
        for side in (self.bids, self.asks):
            n = len(side)
            for _ in range(max(1, n // 10)):
                level = side[self.rng.randrange(n)]
                level[1] = max(1, int(level[1] * self.rng.lognormvariate(0.0, 0.3)))
            if n > 10 and self.rng.random() < 0.05:
                del side[self.rng.randrange(1, n)]  # a level cancelled entirely (never the touch)
        if len(self.bids) < KEEP_LEVELS or len(self.asks) < KEEP_LEVELS:
            self._extend()

    # -- output ---------------------------------------------------------------------------

    def best(self) -> tuple[int, int]:
        return self.bids[0][0], self.asks[0][0]

    def price(self, ticks: int) -> Decimal:
        value = self._prices.get(ticks)
        if value is None:
            if len(self._prices) > 50_000:
                self._prices.clear()
            value = self._prices[ticks] = self.tick * ticks
        return value

    def quantity(self, steps: int) -> Decimal:
        value = self._quantities.get(steps)
        if value is None:
            if len(self._quantities) > 50_000:
                self._quantities.clear()
            value = self._quantities[steps] = self.step * steps
        return value

    def snapshot(self, depth: int = 50) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        price, quantity = self.price, self.quantity
        return (tuple((price(p), quantity(q)) for p, q in self.bids[:depth]),
                tuple((price(p), quantity(q)) for p, q in self.asks[:depth]))


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: fine for the small means used here)."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
