"""``run_backtest``: picks the path (fast vectorised or event-driven) and assembles the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from tradepilot.strategies.backtest import fast
from tradepilot.strategies.backtest.broker import Broker
from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.fills import FillTable
from tradepilot.strategies.backtest.ledger import buy_and_hold, equity_curve
from tradepilot.strategies.backtest.result import BacktestResult
from tradepilot.strategies.bars import Bars, align
from tradepilot.strategies.base import EventStrategy, SignalAdapter, SignalStrategy, Strategy

Path = Literal["auto", "fast", "events"]


class BacktestError(ValueError):
    """A backtest that cannot run as asked (no bars, a path the strategy cannot take…)."""


def fast_path_applies(strategy: Strategy, bars: Sequence[Bars], config: BacktestConfig) -> bool:
    """The vectorised path covers signal strategies on one symbol without a volume cap."""
    return isinstance(strategy, SignalStrategy) and len(bars) == 1 and config.volume_cap is None


def run_backtest(strategy: Strategy, bars: Bars | Sequence[Bars], config: BacktestConfig | None = None, *,
                 path: Path = "auto", timeframe: str | None = None,
                 progress: Callable[[float], None] | None = None) -> BacktestResult:
    """Backtest ``strategy`` on ``bars`` (one symbol, or several aligned on common times)."""
    config = config or BacktestConfig()
    series = align([bars] if isinstance(bars, Bars) else list(bars))
    if not series or len(series[0]) < 2:
        raise BacktestError("a backtest needs at least two bars")
    if len({b.symbol for b in series}) != len(series):
        raise BacktestError("each symbol may appear once")
    use_fast = path == "fast" or (path == "auto" and fast_path_applies(strategy, series, config))
    if use_fast and not fast_path_applies(strategy, series, config):
        raise BacktestError("the fast path needs a signal strategy on one symbol and no volume cap")
    if use_fast:
        assert isinstance(strategy, SignalStrategy)
        fills = fast.simulate(series[0], strategy.signals(series[0]), config)
        orders = None
        if progress is not None:
            progress(1.0)
    else:
        event = strategy if isinstance(strategy, EventStrategy) else SignalAdapter(strategy)  # type: ignore[arg-type]
        broker = Broker(series, config)
        broker.run(event, progress)
        fills = FillTable.of(broker.fills)
        orders = broker.orders
    equity, cash, positions = equity_curve(fills, series, config.initial_cash)
    return BacktestResult(
        strategy=strategy.name, params=strategy.params.model_dump(mode="json"), config=config, bars=series,
        fills=fills, broker_orders=orders, equity=equity, cash=cash, positions=positions,
        benchmark=buy_and_hold(series, config.initial_cash, config.taker_fee), path="fast" if use_fast else "events",
        timeframe=timeframe)
