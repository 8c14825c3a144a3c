"""Trading accounts, their balances, and the double-entry ledger that is the record of both.

Chart of accounts (``Bucket``): every posting moves an amount of one asset into or out of one
bucket of one trading account; the postings of a transaction sum to zero per asset.

* ``free``     — the account's asset, available to trade or withdraw (``Balance.free``);
* ``locked``   — the account's asset, reserved by open orders (``Balance.locked``);
* ``external`` — the world outside the account: deposits come from it, withdrawals go to it,
  resets settle against it;
* ``market``   — the counterparty of trades: a buy pays quote to it and receives base from it;
* ``fees``     — what the venue charged.

Only ``free`` and ``locked`` are materialised (in ``Balance``, kept in the same transaction as
the postings) and must never be negative in a spot account. The other buckets are nominal:
their running sums (``external`` = minus the net deposits, ``fees`` = fees paid) are read
from the postings when needed. Amounts are signed ``Decimal``: + adds to the bucket.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.money import EXACT
from tradepilot.core.secrets_box import register_encrypted_column
from tradepilot.core.types import Money
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class AccountKind:
    PAPER = "paper"  # the built-in paper exchange
    LIVE = "live"  # a real exchange through ccxt (trading/live/, docs/exchanges.md)


class AccountStatus:
    ACTIVE = "active"
    CLOSED = "closed"


class MarginMode:
    SPOT = "spot"  # the only mode in this release; "cross"/"isolated" margin and futures later


class Bucket:
    FREE = "free"
    LOCKED = "locked"
    EXTERNAL = "external"
    MARKET = "market"
    FEES = "fees"

    ALL = frozenset({FREE, LOCKED, EXTERNAL, MARKET, FEES})
    HELD = frozenset({FREE, LOCKED})  # materialised in Balance; never negative on a spot account


class LedgerKind:
    """What a ledger transaction records."""

    DEPOSIT = "deposit"  # external → free (also the starting balance of a new account)
    WITHDRAWAL = "withdrawal"  # free → external
    RESET = "reset"  # every balance back to the starting balance, against external
    RESERVATION = "reservation"  # free → locked (an order is placed)
    RELEASE = "release"  # locked → free (an order is cancelled, or its unused reservation)
    FILL = "fill"  # locked → market, market → free, and the fee (an order traded)
    FEE = "fee"  # a fee on its own (free → fees)
    ADJUSTMENT = "adjustment"  # an operator's correction

    ALL = frozenset({DEPOSIT, WITHDRAWAL, RESET, RESERVATION, RELEASE, FILL, FEE, ADJUSTMENT})


class TradingAccount(UUIDPrimaryKey, Base):
    """One trading account of a user: a paper account today, a live exchange account later."""

    __tablename__ = "trading_account"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16), default=AccountKind.PAPER)
    venue: Mapped[str] = mapped_column(String(64), default="paper")
    quote_currency: Mapped[str] = mapped_column(String(16), default="USDT")  # valuation and starting asset
    margin_mode: Mapped[str] = mapped_column(String(16), default=MarginMode.SPOT)
    is_default: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    starting_balance: Mapped[Decimal] = mapped_column(Money)  # of quote_currency; what reset returns to
    ledger_seq: Mapped[int] = mapped_column(default=0)  # the last ledger transaction's number
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    # live accounts only: the exchange's API key and secret as SecretBox ciphertext (one JSON
    # document, so rotation re-encrypts both at once) — never returned, never logged — and
    # what the exchange said the key may do when it was added (no secret in it)
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    key_permissions: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    @property
    def is_active(self) -> bool:
        return self.status == AccountStatus.ACTIVE

    @property
    def is_live(self) -> bool:
        return self.kind == AccountKind.LIVE


register_encrypted_column(TradingAccount.credentials_encrypted)  # `tradepilot keys rotate` finds it


# at most one default account per user (also when two first requests race to create it)
Index("uq_trading_account_user_default", TradingAccount.user_id, unique=True,
      sqlite_where=text("is_default"), postgresql_where=text("is_default"))


class Balance(Base):
    """An asset's free and locked amounts in one account: the ledger's running sums, kept with it."""

    __tablename__ = "trading_balance"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"),
                                                  primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), primary_key=True)
    free: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    locked: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    version: Mapped[int] = mapped_column(default=0)  # +1 per change: an update names the version it read
    updated_at: Mapped[datetime]

    @property
    def total(self) -> Decimal:
        return EXACT.add(self.free, self.locked)  # 36 significant digits: beyond the default context


class LedgerTransaction(UUIDPrimaryKey, Base):
    """One journal entry: two or more postings that sum to zero per asset."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        UniqueConstraint("account_id", "dedupe_key"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    seq: Mapped[int]  # 1, 2, 3 … per account, in commit order (taken under the account's lock)
    kind: Mapped[str] = mapped_column(String(24))
    reference_type: Mapped[str | None] = mapped_column(String(32))  # "order", "fill", "api" …
    reference_id: Mapped[str | None] = mapped_column(String(64))
    # a caller-chosen key: a second post with the same key returns the first transaction
    # (a retried fill settlement, an Idempotency-Key) instead of moving money twice
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    memo: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]


Index("ix_ledger_transaction_reference", LedgerTransaction.reference_type, LedgerTransaction.reference_id)


class LedgerPosting(UUIDPrimaryKey, Base):
    """One leg of a transaction: ``amount`` (signed) of ``asset`` into ``bucket`` of an account."""

    __tablename__ = "ledger_posting"

    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transaction.id", ondelete="CASCADE"),
                                                      index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    asset: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money)


Index("ix_ledger_posting_account_asset", LedgerPosting.account_id, LedgerPosting.asset)

LedgerEntry = LedgerTransaction  # the name used in the issue: a journal entry and its postings
