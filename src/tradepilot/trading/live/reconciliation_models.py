"""What reconciliation of a live account keeps: its runs (with the differences found) and,
per symbol, the last exchange trade it has seen (docs/exchanges.md, "Reconciliation").

A run's ``differences`` is the list shown to the user (``GET …/reconciliation``): one entry
per thing the exchange and the platform disagreed on, and what was done about it.
``live_trade_cursor`` is what makes "fills since the last seen one" survive restarts: the
next run asks the exchange for trades after ``last_trade_id`` (Binance: ``myTrades?fromId``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.trading import models as _trading_models  # noqa: F401  (trading_account, the FK target)


class RunTrigger:
    STARTUP = "startup"  # the process took the account's lease
    PERIODIC = "periodic"  # every live_reconcile_interval_seconds
    MANUAL = "manual"  # POST /api/trading/accounts/{id}/reconcile
    RECONNECT = "reconnect"  # the user-data stream (re)subscribed: what it missed meanwhile
    STREAM = "stream"  # order updates pushed by the user-data stream (recorded only with differences)

    ALL = frozenset({STARTUP, PERIODIC, MANUAL, RECONNECT, STREAM})


class RunStatus:
    OK = "ok"  # the exchange and the platform agreed
    DIFFERENCES = "differences"  # they did not: see ``differences``
    FAILED = "failed"  # the exchange could not be read (``error_code``); the next run tries again


class ReconciliationRun(UUIDPrimaryKey, Base):
    __tablename__ = "live_reconciliation_run"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)  # 1, 2, 3… per account: newest first, whatever the clock says
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(200))  # the process that held the account's lease
    lease_token: Mapped[int] = mapped_column(BigInteger)
    differences: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(48))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


Index("ix_live_reconciliation_run_account_seq", ReconciliationRun.account_id, ReconciliationRun.seq)


class TradeCursor(Base):
    """The newest exchange trade of ``symbol`` reconciliation has recorded or ruled out."""

    __tablename__ = "live_trade_cursor"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"),
                                                  primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_trade_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
