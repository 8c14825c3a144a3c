"""Bodies of the trading-account endpoints. Money is exact on input and a string on output."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    SecretStr,
    StringConstraints,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tradepilot.core.money import EXACT
from tradepilot.core.schemas import Money, Schema


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Asset = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z0-9]{2,16}$")]
"""An asset code such as ``USDT`` or ``BTC`` (case-insensitive on input, upper case stored)."""

PositiveMoney = Annotated[Money, Field(gt=0)]
NonNegativeMoney = Annotated[Money, Field(ge=0)]

AccountStatusName = Literal["active", "closed"]


AccountName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AccountCreate(Schema):
    type: Literal["paper"] = "paper"
    name: AccountName
    starting_balance: NonNegativeMoney | None = Field(
        default=None, description="In `quote_currency`; default TRADEPILOT_PAPER_STARTING_BALANCE")
    quote_currency: Asset | None = Field(
        default=None, description="Valuation and starting asset; default TRADEPILOT_PAPER_QUOTE_ASSET")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class LiveAccountCreate(Schema):
    """A live account on a real exchange (docs/exchanges.md). The key and secret are checked
    with the exchange, stored encrypted, and never shown again."""

    type: Literal["live"]
    exchange: Annotated[str, BeforeValidator(_lower), StringConstraints(pattern=r"^[a-z0-9]{2,32}$")] = Field(
        description="A ccxt exchange id the operator enabled (TRADEPILOT_LIVE_EXCHANGES), e.g. `binance`")
    api_key: Annotated[SecretStr, Field(min_length=1, max_length=512)]
    secret: Annotated[SecretStr, Field(min_length=1, max_length=512)]
    name: AccountName | None = Field(default=None, description="Default: the exchange's name")
    quote_currency: Asset | None = Field(
        default=None, description="Valuation currency; default TRADEPILOT_PAPER_QUOTE_ASSET")


def _account_kind(value: Any) -> str:
    kind = value.get("type", "paper") if isinstance(value, dict) else getattr(value, "type", "paper")
    return kind if kind in ("paper", "live") else "paper"  # an unknown type fails as a paper body would


def _untagged_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A field error names the field (``name``), not the union member it was checked as
    (``paper.name``): the API's ``errors[].field`` stays what it was before live accounts."""
    try:
        return handler(value)
    except ValidationError as exc:
        details: list[InitErrorDetails] = [{
            "type": PydanticCustomError(err["type"], "{reason}", {"reason": err["msg"]}),
            "loc": tuple(err["loc"][1:] if err["loc"] and err["loc"][0] in ("paper", "live") else err["loc"]),
            "input": err.get("input")} for err in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, details) from None


AnyAccountCreate = Annotated[Annotated[AccountCreate, Tag("paper")] | Annotated[LiveAccountCreate, Tag("live")],
                             Discriminator(_account_kind), WrapValidator(_untagged_errors)]
"""`POST /api/trading/accounts`: a paper account (`type` absent or `paper`) or a live one."""


class AmountRequest(Schema):
    """A deposit or withdrawal: an exact positive amount of one asset."""

    asset: Asset
    amount: PositiveMoney


class BalanceOut(Schema):
    asset: str
    free: Money
    locked: Money
    total: Money


class AccountOut(Schema):
    id: uuid.UUID
    name: str
    kind: str = Field(description="`paper` (the built-in paper exchange) or `live` (a real exchange)")
    venue: str = Field(description="`paper`, or the exchange of a live account (`binance`)")
    quote_currency: str
    margin_mode: str = Field(description="`spot` in this release")
    is_default: bool
    status: AccountStatusName
    starting_balance: Money
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    key_permissions: dict[str, bool] | None = Field(
        default=None, description="Live accounts: what the exchange said the API key may do when it was added")


class AccountDetail(AccountOut):
    balances: list[BalanceOut]


class PostingOut(Schema):
    asset: str
    bucket: str = Field(description="free, locked, external, market or fees (docs/trading-accounts.md)")
    amount: Money = Field(description="Signed: positive adds to the bucket")


class TransactionOut(Schema):
    id: uuid.UUID
    seq: int = Field(description="1, 2, 3 … per account; `cursor` pages by it")
    kind: str
    reference_type: str | None
    reference_id: str | None
    memo: str | None
    created_at: datetime
    postings: list[PostingOut]


class BalanceChange(Schema):
    """The ledger transaction a deposit or withdrawal wrote, and the balance after it."""

    transaction: TransactionOut
    balances: list[BalanceOut]


def balance_out(asset: str, free: Decimal, locked: Decimal) -> BalanceOut:
    return BalanceOut(asset=asset, free=free, locked=locked, total=EXACT.add(free, locked))
