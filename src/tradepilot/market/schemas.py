"""Response bodies of /api/market: decimals as strings (``Money``), times RFC 3339 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from tradepilot.core.schemas import Money, Schema

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d"]


class InstrumentOut(Schema):
    venue: str
    symbol: str
    base: str
    quote: str
    tick_size: Money
    step_size: Money
    min_notional: Money
    status: str


class InstrumentList(Schema):
    items: list[InstrumentOut]
    next_cursor: str | None = None


class PriceOut(Schema):
    symbol: str
    price: Money | None  # the last trade
    bid: Money | None
    ask: Money | None
    open_24h: Money | None
    high_24h: Money | None
    low_24h: Money | None
    volume_24h: Money | None
    change_24h_pct: Money | None
    ts: datetime | None


class PriceList(Schema):
    items: list[PriceOut]


class PricePoint(Schema):
    time: datetime
    price: Money


class PriceHistory(Schema):
    symbol: str
    timeframe: Timeframe
    items: list[PricePoint]
    next_cursor: str | None = None


class OrderBookOut(Schema):
    venue: str
    symbol: str
    seq: int
    ts: datetime
    bids: list[tuple[Money, Money]]
    asks: list[tuple[Money, Money]]


class TradeOut(Schema):
    id: str
    price: Money
    quantity: Money
    side: Literal["buy", "sell"]
    ts: datetime


class TradeList(Schema):
    symbol: str
    items: list[TradeOut]


class CandleOut(Schema):
    open_time: datetime
    open: Money
    high: Money
    low: Money
    close: Money
    volume: Money
    closed: bool


class CandlePage(Schema):
    symbol: str
    timeframe: Timeframe
    items: list[CandleOut]
    next_cursor: str | None = None


class GapOut(Schema):
    start: datetime
    end: datetime
    missing_bars: int


class GapList(Schema):
    symbol: str
    timeframe: Timeframe
    items: list[GapOut]


class VolumePeriod(Schema):
    open_time: datetime
    volume: Money
    quote_volume: Money


class VolumeOut(Schema):
    symbol: str
    timeframe: Timeframe
    window: int
    periods: list[VolumePeriod]
    total_volume: Money
    total_quote_volume: Money
    vwap: Money | None
    average_volume: Money | None
    relative_volume: float | None


class Estimate(Schema):
    per_period: float
    annualised: float


class AtrOut(Schema):
    period: int
    value: float
    percent_of_price: float


class VolatilityOut(Schema):
    symbol: str
    timeframe: Timeframe
    window: int
    observations: int
    start: datetime
    end: datetime
    periods_per_year: float
    close_to_close: Estimate
    parkinson: Estimate
    garman_klass: Estimate
    atr: AtrOut


class CorrelationsOut(Schema):
    timeframe: Timeframe
    window: int
    observations: int
    start: datetime | None
    end: datetime | None
    symbols: list[str]
    matrix: list[list[float | None]]
