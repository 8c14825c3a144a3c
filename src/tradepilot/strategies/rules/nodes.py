"""The parsed form of a rule document: indicator specs, operands and conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

PRICES = ("open", "high", "low", "close", "volume")
Source = Literal["open", "high", "low", "close", "volume"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MovingAverage(_Spec):
    type: Literal["sma", "ema", "wma"]
    period: int = Field(ge=1, le=5000)
    source: Source = "close"


class Oscillator(_Spec):
    type: Literal["rsi", "roc", "stddev"]
    period: int = Field(14, ge=2, le=5000)
    source: Source = "close"


class AverageTrueRange(_Spec):
    type: Literal["atr"]
    period: int = Field(14, ge=1, le=5000)


class BollingerBands(_Spec):
    type: Literal["bbands"]
    period: int = Field(20, ge=2, le=5000)
    deviations: float = Field(2.0, gt=0, le=10)
    source: Source = "close"


class Macd(_Spec):
    type: Literal["macd"]
    fast: int = Field(12, ge=1, le=5000)
    slow: int = Field(26, ge=2, le=5000)
    signal: int = Field(9, ge=1, le=5000)


IndicatorSpec = Annotated[Union[MovingAverage, Oscillator, AverageTrueRange, BollingerBands, Macd],
                          Field(discriminator="type")]
OUTPUTS: dict[str, tuple[str, ...]] = {"bbands": ("upper", "middle", "lower"), "macd": ("macd", "signal", "hist")}
"""Indicators with several outputs, referred to as ``name.output``."""


@dataclass(frozen=True, slots=True)
class Price:
    field: str


@dataclass(frozen=True, slots=True)
class IndicatorRef:
    name: str
    output: str | None = None


@dataclass(frozen=True, slots=True)
class Number:
    value: float


Operand = Price | IndicatorRef | Number


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # gt, gte, lt, lte, crosses_above, crosses_below
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition


Condition = Compare | AllOf | AnyOf | Not
COMPARISONS = ("gt", "gte", "lt", "lte", "crosses_above", "crosses_below")
