"""Strategies that build positions over time: grid trading and dollar-cost averaging.

Both are event-driven: what they do next depends on which of their orders filled.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from tradepilot.strategies.base import EventStrategy, FillEvent, OrderRequest, StrategyContext, StrategyParams


class GridParams(StrategyParams):
    lower: float = Field(gt=0, description="lowest grid price")
    upper: float = Field(gt=0, description="highest grid price")
    levels: int = Field(10, ge=2, le=200, description="number of grid prices, evenly spaced from lower to upper")
    fraction_per_level: float | None = Field(None, gt=0, le=1,
                                             description="fraction of starting cash each buy level spends "
                                                         "(default: 1 / levels)")

    @model_validator(mode="after")
    def _range(self) -> GridParams:
        if self.lower >= self.upper:
            raise ValueError(f"lower ({self.lower}) must be less than upper ({self.upper})")
        return self


class GridTrading(EventStrategy):
    """Limit buys on the grid prices below the market; each filled buy places a limit sell one
    level up for the same quantity, and each filled sell re-places the buy below it."""

    name = "grid"
    title = "Grid trading"
    description = "Buy and sell limit orders on a fixed price grid, earning each level's spread in a ranging market."
    Params: ClassVar[type[StrategyParams]] = GridParams

    def on_start(self, ctx: StrategyContext) -> None:
        p = self.params
        assert isinstance(p, GridParams)
        self.symbol = ctx.symbols[0]
        self.prices = np.linspace(p.lower, p.upper, p.levels).tolist()
        self.budget = ctx.cash * (p.fraction_per_level or 1.0 / p.levels)
        self.working: dict[int, tuple[str, int]] = {}  # order id -> (side, level)
        self.started = False

    def _buy(self, ctx: StrategyContext, level: int) -> None:
        price = self.prices[level]
        oid = ctx.submit(OrderRequest(self.symbol, "buy", "limit", quantity=self.budget / price, price=price,
                                      tag=f"grid-buy-{level}"))
        self.working[oid] = ("buy", level)

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        if self.started:
            return
        self.started = True
        last = float(ctx.bars(self.symbol).close[i])
        for level, price in enumerate(self.prices[:-1]):
            if price < last:
                self._buy(ctx, level)

    def state(self) -> dict[str, Any]:
        return {"budget": self.budget, "started": self.started,
                "working": {str(oid): [side, level] for oid, (side, level) in self.working.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """A resumed live run keeps its grid: the budget it started with, the orders it works."""
        self.budget, self.started = float(state["budget"]), bool(state["started"])
        self.working = {int(oid): (side, int(level)) for oid, (side, level) in state["working"].items()}

    def on_fill(self, ctx: StrategyContext, fill: FillEvent) -> None:
        side, level = self.working.get(fill.order_id, ("", -1))
        if side == "buy":
            oid = ctx.submit(OrderRequest(self.symbol, "sell", "limit", quantity=fill.quantity,
                                          price=self.prices[level + 1], tag=f"grid-sell-{level + 1}"))
            self.working[oid] = ("sell", level + 1)
        elif side == "sell" and ctx.position(self.symbol) >= 0:
            self._buy(ctx, level - 1)


class DcaParams(StrategyParams):
    interval_bars: int = Field(24, ge=1, le=100_000, description="buy once every this many bars")
    amount: float = Field(100.0, gt=0, description="quote currency spent on each buy (fee included)")
    take_profit: float | None = Field(None, gt=0,
                                      description="sell everything when the close is this fraction above the "
                                                  "average cost, then start again")


class DollarCostAveraging(EventStrategy):
    """Buy a fixed amount every ``interval_bars`` bars, whatever the price; optionally take
    profit on the whole position once it is far enough above its average cost."""

    name = "dca"
    title = "Dollar-cost averaging"
    description = "Buy a fixed quote amount at a fixed interval; optionally sell all at a take-profit above average cost."
    Params: ClassVar[type[StrategyParams]] = DcaParams

    def on_start(self, ctx: StrategyContext) -> None:
        self.symbol = ctx.symbols[0]
        self.quantity = 0.0
        self.cost = 0.0
        self.bars_seen = 0  # bars since the start: ``i`` in a backtest; a live run sees a sliding window

    def state(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "cost": self.cost, "bars_seen": self.bars_seen}

    def restore(self, state: dict[str, Any]) -> None:
        self.quantity, self.cost = float(state["quantity"]), float(state["cost"])
        self.bars_seen = int(state["bars_seen"])

    def on_fill(self, ctx: StrategyContext, fill: FillEvent) -> None:
        if fill.side == "buy":
            self.quantity += fill.quantity
            self.cost += fill.price * fill.quantity + fill.fee
        else:
            self.quantity, self.cost = 0.0, 0.0

    def on_bar(self, ctx: StrategyContext, i: int) -> None:
        p = self.params
        assert isinstance(p, DcaParams)
        seen, self.bars_seen = self.bars_seen, self.bars_seen + 1
        if ctx.has_pending_market_order(self.symbol):
            return
        close = float(ctx.bars(self.symbol).close[i])
        if p.take_profit is not None and self.quantity > 0 and close * self.quantity >= self.cost * (1 + p.take_profit):
            ctx.submit(OrderRequest(self.symbol, "sell", tag="dca-take-profit"))
        elif seen % p.interval_bars == 0 and ctx.cash >= p.amount:
            ctx.submit(OrderRequest(self.symbol, "buy", notional=p.amount, tag="dca-buy"))
