"""What a backtest returns: orders, fills, trades, the equity curve, buy-and-hold alongside,
and the shared metrics (``portfolio.metrics.performance_report``; none are computed here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

import numpy as np

from tradepilot.portfolio.metrics import PerformanceReport, performance_report, simple_returns
from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.fills import Fill, FillTable, SimOrder
from tradepilot.strategies.backtest.ledger import Trade, build_trades
from tradepilot.strategies.bars import Bars

SECONDS_PER_YEAR = 365 * 86_400  # crypto trades every day (docs/metrics.md)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    symbol: str
    side: str
    type: str
    role: str
    tag: str
    status: str
    reason: str
    filled_quantity: float
    average_price: float | None
    fees: float
    placed_index: int
    closed_index: int | None

    @classmethod
    def of(cls, o: SimOrder) -> OrderRecord:
        return cls(o.id, o.symbol, o.side, o.type, o.role, o.tag, o.status, o.reason, o.filled,
                   o.notional_filled / o.filled if o.filled else None, o.fees, o.created, o.closed_at)

    @classmethod
    def of_fill(cls, f: Fill) -> OrderRecord:
        kind = {"stop_loss": "stop", "trailing_stop": "trailing_stop", "take_profit": "limit"}.get(f.role, "market")
        return cls(f.order_id, f.symbol, f.side, kind, f.role, f.tag, "filled", "", f.quantity, f.price, f.fee,
                   f.index - 1 if kind == "market" else f.index, f.index)


def periods_per_year(time_ms: np.ndarray) -> float:
    """Bars per year from the bars' spacing (the median, so a gap does not skew it)."""
    if len(time_ms) < 2:
        return 365.0
    step = float(np.median(np.diff(time_ms))) / 1000.0
    return SECONDS_PER_YEAR / step if step > 0 else 365.0


def utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class BacktestResult:
    strategy: str
    params: dict[str, Any]
    config: BacktestConfig
    bars: list[Bars]
    fills: FillTable
    equity: np.ndarray
    cash: np.ndarray
    positions: dict[str, np.ndarray]
    benchmark: np.ndarray
    path: str
    timeframe: str | None = None
    annualization: float = field(default=0.0)
    broker_orders: list[SimOrder] | None = None

    @cached_property
    def orders(self) -> list[OrderRecord]:
        """Every order with its outcome (the fast path's orders are the fills' own)."""
        if self.broker_orders is not None:
            return [OrderRecord.of(o) for o in self.broker_orders]
        return [OrderRecord.of_fill(f) for f in self.fills.rows()]

    @cached_property
    def trades(self) -> list[Trade]:
        """Round trips, built on first use (a million-bar run needs only the fills)."""
        return build_trades(self.fills.rows(), self.bars)

    def __post_init__(self) -> None:
        if not self.annualization:
            self.annualization = periods_per_year(self.time)

    @property
    def time(self) -> np.ndarray:
        return self.bars[0].time

    @property
    def symbols(self) -> list[str]:
        return [b.symbol for b in self.bars]

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])

    @property
    def closed_trades(self) -> list[Trade]:
        return [t for t in self.trades if not t.is_open]

    def _dates(self) -> np.ndarray:
        return self.time.astype("datetime64[ms]")

    @cached_property
    def metrics(self) -> PerformanceReport:
        """The strategy's figures, with buy-and-hold as the benchmark (beta, alpha)."""
        values = np.column_stack([self.positions[b.symbol] * b.close for b in self.bars])
        return performance_report(self.equity, dates=self._dates(), benchmark=simple_returns(self.benchmark),
                                  trade_pnls=[t.pnl for t in self.closed_trades], position_values=values,
                                  periods_per_year=self.annualization)

    @cached_property
    def benchmark_metrics(self) -> PerformanceReport:
        return performance_report(self.benchmark, dates=self._dates(), periods_per_year=self.annualization)

    def summary(self) -> dict[str, Any]:
        """The headline figures, JSON-ready (NaN → null)."""
        m, b = self.metrics, self.benchmark_metrics
        clean = lambda x: None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x  # noqa: E731
        return {
            "strategy": self.strategy, "params": self.params, "symbols": self.symbols, "timeframe": self.timeframe,
            "path": self.path, "bars": len(self.time), "start": utc(int(self.time[0])), "end": utc(int(self.time[-1])),
            "initial_cash": self.config.initial_cash, "final_equity": self.final_equity,
            "total_return": clean(m.time_weighted_return), "cagr": clean(m.annualized_return),
            "sharpe": clean(m.sharpe), "sortino": clean(m.sortino), "calmar": clean(m.calmar),
            "max_drawdown": clean(m.max_drawdown), "volatility": clean(m.volatility),
            "trades": len(self.closed_trades), "open_trades": len(self.trades) - len(self.closed_trades),
            "win_rate": clean(m.trades.win_rate) if m.trades else None,
            "profit_factor": clean(m.trades.profit_factor) if m.trades else None,
            "fees": float(self.fills.fee.sum()),
            "time_in_market": clean(m.exposure.time_in_market) if m.exposure else None,
            "buy_and_hold": {"final_equity": float(self.benchmark[-1]),
                             "total_return": clean(b.time_weighted_return), "sharpe": clean(b.sharpe),
                             "max_drawdown": clean(b.max_drawdown)},
            "fees_rates": {"maker": self.config.maker_fee, "taker": self.config.taker_fee},
            "slippage": self.config.slippage, "volume_cap": self.config.volume_cap,
            "annualization": self.annualization,
        }

    def trade_rows(self) -> list[dict[str, Any]]:
        return [{"symbol": t.symbol, "entry_time": utc(t.entry_time), "entry_price": t.entry_price,
                 "exit_time": utc(t.exit_time), "exit_price": t.exit_price, "quantity": t.quantity, "pnl": t.pnl,
                 "return": t.return_pct, "fees": t.fees, "exit_reason": t.exit_reason} for t in self.trades]
