"""The instrument registry: what each venue lists, written by the venue's feed owner."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base
from tradepilot.core.types import Money


class MarketInstrument(Base):
    """One tradable symbol of one venue (ccxt unified symbol, ``BTC/USDT``)."""

    __tablename__ = "market_instrument"

    venue: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    base: Mapped[str] = mapped_column(String(32))
    quote: Mapped[str] = mapped_column(String(32))
    tick_size: Mapped[Decimal] = mapped_column(Money)
    step_size: Mapped[Decimal] = mapped_column(Money)
    min_notional: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]
