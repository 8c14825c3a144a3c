"""Trend followers: moving-average and MACD crossovers (vectorised)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from tradepilot.strategies import indicators as ta
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import RiskParams, SignalStrategy, Signals, StrategyParams, check_ordered


class CrossoverParams(RiskParams):
    fast: int = Field(10, ge=1, le=1000, description="period of the fast moving average")
    slow: int = Field(30, ge=2, le=5000, description="period of the slow moving average")
    source: str = Field("close", pattern="^(open|high|low|close)$", description="price the averages are taken of")

    @model_validator(mode="after")
    def _ordered(self):  # type: ignore[no-untyped-def]
        check_ordered(self, "fast", "slow")
        return self


class SmaCrossover(SignalStrategy):
    """Long when the fast SMA crosses above the slow one; flat when it crosses below."""

    name = "sma_cross"
    title = "SMA crossover"
    description = "Buy when the fast simple moving average crosses above the slow one, sell when it crosses below."
    Params: ClassVar[type[StrategyParams]] = CrossoverParams
    average = staticmethod(ta.sma)

    def signals(self, bars: Bars) -> Signals:
        p = self.params
        assert isinstance(p, CrossoverParams)
        prices = bars.field(p.source)
        fast, slow = self.average(prices, p.fast), self.average(prices, p.slow)
        return Signals.of(ta.crossed_above(fast, slow), ta.crossed_below(fast, slow), p)


class EmaCrossover(SmaCrossover):
    """The same rule on exponential moving averages (they react sooner)."""

    name = "ema_cross"
    title = "EMA crossover"
    description = "Buy when the fast exponential moving average crosses above the slow one, sell when below."
    average = staticmethod(ta.ema)


class MacdParams(RiskParams):
    fast: int = Field(12, ge=1, le=1000)
    slow: int = Field(26, ge=2, le=5000)
    signal: int = Field(9, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self):  # type: ignore[no-untyped-def]
        check_ordered(self, "fast", "slow")
        return self


class MacdCrossover(SignalStrategy):
    """Long when the MACD line crosses above its signal line; flat when it crosses below."""

    name = "macd"
    title = "MACD crossover"
    description = "Buy when the MACD line crosses above its signal line, sell when it crosses below."
    Params: ClassVar[type[StrategyParams]] = MacdParams

    def signals(self, bars: Bars) -> Signals:
        p = self.params
        assert isinstance(p, MacdParams)
        line, signal, _ = ta.macd(bars.close, p.fast, p.slow, p.signal)
        return Signals.of(ta.crossed_above(line, signal), ta.crossed_below(line, signal), p)
