"""Maker/taker fee rates: one default, overridable per account (a plan, a promotion).

A rate is a fraction of the fill's notional (``Decimal("0.001")`` = 0.1 %), charged in the
quote currency. A negative maker rate is a rebate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class FeeRates:
    maker: Decimal
    taker: Decimal

    def __post_init__(self) -> None:
        for value in (self.maker, self.taker):
            if not isinstance(value, Decimal) or not value.is_finite():
                raise ValueError("fee rates must be finite Decimals")


DEFAULT_RATES = FeeRates(maker=Decimal("0.001"), taker=Decimal("0.001"))


@dataclass(slots=True)
class FeeSchedule:
    default: FeeRates = DEFAULT_RATES
    accounts: dict[str, FeeRates] = field(default_factory=dict)

    def rates(self, account_id: str) -> FeeRates:
        return self.accounts.get(account_id, self.default)

    def set_account(self, account_id: str, rates: FeeRates | None) -> None:
        """Override an account's rates (None: back to the default)."""
        if rates is None:
            self.accounts.pop(account_id, None)
        else:
            self.accounts[account_id] = rates
