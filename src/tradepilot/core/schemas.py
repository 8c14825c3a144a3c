"""The base Pydantic model and shared field types of the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic_core import PydanticCustomError

from tradepilot.core.money import PrecisionLossError, parse_decimal, to_plain_string


class Schema(BaseModel):
    """Requests refuse unknown fields (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, populate_by_name=True)


def _exact_decimal(raw: Any) -> Decimal:
    try:
        return parse_decimal(raw)
    except PrecisionLossError as exc:
        raise PydanticCustomError("decimal_precision_loss", "{reason}", {"reason": str(exc)}) from None


Money = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    PlainSerializer(to_plain_string, return_type=str, when_used="json"),
]
"""A price, quantity, balance or fee: exact on input, a plain decimal string on output."""

T = TypeVar("T")


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
