"""Equity history: what each trading account was worth, day by day and within today.

Both tables are derived data — the ledger, the fills and the market's prices are the record —
so they can always be rebuilt (``portfolio.equity.rebuild``). They exist because analytics
over years of history must not replay the ledger and price every day on each request.

* ``equity_day``: one row per account and UTC day, valued at the day's closing prices.
  A row is ``final`` once its day has ended and it was valued after the end; today's row is
  rewritten (intraday) until then. ``holdings`` keeps the end-of-day quantities (and
  ``ledger_seq`` the last ledger transaction included), so the next day starts from them
  instead of from the beginning of the ledger.
* ``equity_intraday``: points within the last days (after fills and on the recorder's
  schedule), pruned after a few days; they carry the cumulative flows of their day, so
  intraday returns are flow-adjusted like daily ones.

Flows (``net_flows``: deposits minus withdrawals, resets' adjustments) are cash moved in or
out by the user, valued at the day's prices: metrics treat them as flows, never as returns.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base
from tradepilot.core.types import Money
from tradepilot.trading import models as _trading_models  # noqa: F401  (trading_account, the FK target)


class EquityDay(Base):
    """An account's equity at the end of one UTC day (or now, for today's unfinished row)."""

    __tablename__ = "equity_day"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"),
                                                  primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(16))  # the account's quote currency: every value below
    final: Mapped[bool] = mapped_column(default=False)  # the day had ended when it was valued
    equity: Mapped[Decimal] = mapped_column(Money)  # cash + positions_value
    cash: Mapped[Decimal] = mapped_column(Money)  # the currency itself, free + locked
    positions_value: Mapped[Decimal] = mapped_column(Money)  # every other priced asset
    net_flows: Mapped[Decimal] = mapped_column(Money)  # deposits - withdrawals during the day
    fees: Mapped[Decimal] = mapped_column(Money)  # fees paid during the day
    realised_pnl: Mapped[Decimal] = mapped_column(Money)  # gross P&L realised by the day's fills
    trades: Mapped[int] = mapped_column(default=0)  # fills during the day
    holdings: Mapped[dict[str, Any]] = mapped_column(JSON)  # {asset: quantity string} at the end
    values: Mapped[dict[str, Any]] = mapped_column(JSON)  # {asset: value string}, priced assets only
    unpriced: Mapped[list[str]] = mapped_column(JSON)  # assets held that no price valued
    ledger_seq: Mapped[int] = mapped_column(default=0)  # the last ledger transaction included
    valued_at: Mapped[datetime]


Index("ix_equity_day_user_day", EquityDay.user_id, EquityDay.day)


class EquityIntraday(Base):
    """An account's equity at one moment of a recent day."""

    __tablename__ = "equity_intraday"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"),
                                                  primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    currency: Mapped[str] = mapped_column(String(16))
    equity: Mapped[Decimal] = mapped_column(Money)
    cash: Mapped[Decimal] = mapped_column(Money)
    positions_value: Mapped[Decimal] = mapped_column(Money)
    day_flows: Mapped[Decimal] = mapped_column(Money)  # net flows of ``at``'s day up to ``at``
