"""Mean reversion and breakout on bands: RSI thresholds and Bollinger bands (vectorised)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from tradepilot.strategies import indicators as ta
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.base import RiskParams, SignalStrategy, Signals, StrategyParams


class RsiParams(RiskParams):
    period: int = Field(14, ge=2, le=1000)
    oversold: float = Field(30.0, gt=0, lt=100, description="buy when RSI crosses back above this level")
    overbought: float = Field(70.0, gt=0, lt=100, description="sell when RSI crosses below this level")

    @model_validator(mode="after")
    def _levels(self) -> RsiParams:
        if self.oversold >= self.overbought:
            raise ValueError(f"oversold ({self.oversold}) must be less than overbought ({self.overbought})")
        return self


class RsiMeanReversion(SignalStrategy):
    """Buy the recovery from oversold, sell the turn down from overbought."""

    name = "rsi_reversion"
    title = "RSI mean reversion"
    description = "Buy when the RSI crosses back above the oversold level, sell when it crosses below overbought."
    Params: ClassVar[type[StrategyParams]] = RsiParams

    def signals(self, bars: Bars) -> Signals:
        p = self.params
        assert isinstance(p, RsiParams)
        rsi = ta.rsi(bars.close, p.period)
        return Signals.of(ta.crossed_above(rsi, p.oversold), ta.crossed_below(rsi, p.overbought), p)


class BollingerParams(RiskParams):
    period: int = Field(20, ge=2, le=1000)
    deviations: float = Field(2.0, gt=0, le=10, description="band width in standard deviations")


class BollingerBreakout(SignalStrategy):
    """Buy a close above the upper band (a breakout); sell a close back below the middle."""

    name = "bollinger_breakout"
    title = "Bollinger breakout"
    description = "Buy when the close breaks above the upper Bollinger band, sell when it falls below the middle band."
    Params: ClassVar[type[StrategyParams]] = BollingerParams

    def signals(self, bars: Bars) -> Signals:
        p = self.params
        assert isinstance(p, BollingerParams)
        upper, middle, _ = ta.bbands(bars.close, p.period, p.deviations)
        with np.errstate(invalid="ignore"):
            return Signals.of(ta.crossed_above(bars.close, upper), ta.crossed_below(bars.close, middle), p)
