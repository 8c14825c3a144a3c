"""From fills to the account's history: the equity curve and the round-trip trades.

Both backtest paths produce the same kind of fill list and hand it here, so cash, positions,
equity and trades are computed one way whichever path ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tradepilot.strategies.backtest.fills import Fill, FillTable
from tradepilot.strategies.bars import Bars


@dataclass(frozen=True, slots=True)
class Trade:
    """A position reduced by a sell: entry is the position's average fill price since it was
    opened (first buy from flat), P&L is net of the buy fees' share and the sell's fee.
    An open trade (still held at the end) has no exit and is valued at the last close."""

    symbol: str
    entry_index: int
    entry_time: int
    entry_price: float
    quantity: float
    exit_index: int | None
    exit_time: int | None
    exit_price: float | None
    pnl: float
    return_pct: float
    fees: float
    exit_reason: str

    @property
    def is_open(self) -> bool:
        return self.exit_index is None


@dataclass(slots=True)
class _Holding:
    quantity: float = 0.0
    cost: float = 0.0  # Σ price × quantity of the buys still held
    fees: float = 0.0  # their fees, still to be charged to trades
    entry_index: int = -1
    entry_time: int = 0


def build_trades(fills: Sequence[Fill], bars: Sequence[Bars]) -> list[Trade]:
    """Closed trades in exit order, then the open ones (marked at the last close)."""
    holdings: dict[str, _Holding] = {}
    trades: list[Trade] = []
    for f in fills:
        h = holdings.setdefault(f.symbol, _Holding())
        if f.side == "buy":
            if h.quantity <= 0:
                h.entry_index, h.entry_time = f.index, f.time
            h.quantity += f.quantity
            h.cost += f.price * f.quantity
            h.fees += f.fee
            continue
        share = min(f.quantity / h.quantity, 1.0) if h.quantity > 0 else 1.0
        cost, fees = h.cost * share, h.fees * share
        avg = h.cost / h.quantity if h.quantity > 0 else f.price
        pnl = f.price * f.quantity - cost - fees - f.fee
        trades.append(Trade(f.symbol, h.entry_index, h.entry_time, avg, f.quantity, f.index, f.time, f.price, pnl,
                            pnl / (cost + fees) if cost + fees > 0 else 0.0, fees + f.fee, f.role if f.role != "order"
                            else (f.tag or "signal")))
        h.quantity -= f.quantity
        h.cost -= cost
        h.fees -= fees
        if h.quantity <= 1e-12 * max(f.quantity, 1.0):
            holdings[f.symbol] = _Holding()
    last = {b.symbol: b for b in bars}
    for symbol, h in holdings.items():
        if h.quantity > 0:
            close = float(last[symbol].close[-1])
            pnl = close * h.quantity - h.cost - h.fees
            trades.append(Trade(symbol, h.entry_index, h.entry_time, h.cost / h.quantity, h.quantity, None, None,
                                None, pnl, pnl / (h.cost + h.fees) if h.cost + h.fees > 0 else 0.0, h.fees, "open"))
    return trades


def equity_curve(fills: FillTable, bars: Sequence[Bars], initial_cash: float
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(equity, cash, position per symbol) at every bar's close, all bars on one index."""
    n = len(bars[0])
    signed = fills.side * fills.quantity
    cash = float(initial_cash) + np.cumsum(np.bincount(fills.index, -signed * fills.price - fills.fee, minlength=n))
    positions = {}
    for b in bars:
        mine = fills.symbol == b.symbol
        positions[b.symbol] = np.cumsum(np.bincount(fills.index[mine], signed[mine], minlength=n).astype(float))
    equity = cash.copy()
    for b in bars:
        equity += positions[b.symbol] * b.close
    return equity, cash, positions


def buy_and_hold(bars: Sequence[Bars], initial_cash: float, fee: float) -> np.ndarray:
    """Equity of the same cash split equally over the symbols, bought at the first open (taker
    fee) and held: the benchmark shown alongside every backtest."""
    share = initial_cash / len(bars)
    equity = np.zeros(len(bars[0]))
    for b in bars:
        equity += share / (b.open[0] * (1 + fee)) * b.close
    return equity
