"""Turning a requested strategy into a validated one, with API-shaped errors.

The catalog's parameter models (pydantic) and the rule parser already report every problem
with its path; this module only translates them into the API's 422 field errors, each under
``params`` (``params.fast``, ``params.entry.all.0.crosses_above.0``), so a client can point at
the exact spot to fix.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tradepilot.core.errors import Unprocessable
from tradepilot.strategies.base import StrategyParamsError
from tradepilot.strategies.catalog import UnknownStrategy, get_strategy


def plain_json(value: Any) -> Any:
    """The API parses JSON numbers with a fraction as ``Decimal`` (exact money); strategy
    parameters are floats (the backtester works in float64), so convert them here once."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def _field(loc: list[Any]) -> str:
    return ".".join(["params", *(str(p) for p in loc)])


def validated_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ``strategy`` validated, with defaults filled in (what is stored).

    Raises 422 ``unknown_strategy`` or ``invalid_strategy_params`` with ``errors[]``.
    """
    try:
        cls = get_strategy(strategy)
    except UnknownStrategy as exc:
        raise Unprocessable(str(exc), code="unknown_strategy", extra={"errors": [
            {"field": "strategy", "in": "body", "code": "unknown_strategy", "message": str(exc)}]}) from None
    try:
        parsed = cls.parse_params(plain_json(params))
    except StrategyParamsError as exc:
        errors = [{"field": _field(e["loc"]), "in": "body", "code": "invalid_strategy_params", "message": e["msg"]}
                  for e in exc.errors]
        raise Unprocessable(f"Invalid parameters for {strategy}.", code="invalid_strategy_params",
                            extra={"errors": errors}) from None
    except (ValueError, TypeError) as exc:  # an operator's plugin validating by hand
        raise Unprocessable(f"Invalid parameters for {strategy}: {exc}", code="invalid_strategy_params",
                            extra={"errors": [{"field": "params", "in": "body", "code": "invalid_strategy_params",
                                               "message": str(exc)}]}) from None
    stored = plain_json(parsed.model_dump(mode="json"))
    try:
        json.dumps(stored, allow_nan=False)  # what the JSON column (and PostgreSQL) can hold
    except ValueError:
        raise Unprocessable("Parameters must be finite numbers.", code="invalid_strategy_params", extra={"errors": [
            {"field": "params", "in": "body", "code": "invalid_strategy_params",
             "message": "numbers must be finite"}]}) from None
    return stored  # type: ignore[no-any-return]
