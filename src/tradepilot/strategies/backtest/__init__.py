"""The backtester: ``run_backtest(strategy, bars, config)`` → :class:`BacktestResult`.

Signal strategies on one symbol take the vectorised fast path (``fast.py``); everything else
(event strategies, several symbols, a volume cap) runs through the event-driven broker
(``broker.py``). Both apply the same fill rules (``fills.py``) and give the same results for
the same signals — a property test holds them to it. See docs/strategies.md.
"""

from tradepilot.strategies.backtest.config import BacktestConfig
from tradepilot.strategies.backtest.result import BacktestResult, Trade
from tradepilot.strategies.backtest.runner import run_backtest

__all__ = ["BacktestConfig", "BacktestResult", "Trade", "run_backtest"]
