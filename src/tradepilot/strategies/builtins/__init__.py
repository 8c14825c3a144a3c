"""The built-in strategies; :data:`BUILTINS` is what the catalog lists."""

from tradepilot.strategies.base import Strategy
from tradepilot.strategies.builtins.accumulate import DollarCostAveraging, GridTrading
from tradepilot.strategies.builtins.ai_signals import AiSignals
from tradepilot.strategies.builtins.bands import BollingerBreakout, RsiMeanReversion
from tradepilot.strategies.builtins.trend import EmaCrossover, MacdCrossover, SmaCrossover

BUILTINS: tuple[type[Strategy], ...] = (
    SmaCrossover, EmaCrossover, RsiMeanReversion, BollingerBreakout, MacdCrossover, GridTrading, DollarCostAveraging,
    AiSignals,
)

__all__ = ["BUILTINS", "AiSignals", "BollingerBreakout", "DollarCostAveraging", "EmaCrossover", "GridTrading",
           "MacdCrossover", "RsiMeanReversion", "SmaCrossover"]
