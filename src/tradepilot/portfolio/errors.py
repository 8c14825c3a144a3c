"""The portfolio domain's errors: each a stable problem+json ``code`` (docs/portfolio.md)."""

from __future__ import annotations

from typing import Any

from tradepilot.core.errors import Unprocessable


class InsufficientHistory(Unprocessable):
    """Too few aligned daily closes to estimate returns and a covariance matrix."""

    code, title = "insufficient_history", "Not enough price history"

    def __init__(self, *, required: int, available: int, symbols: list[str] | None = None) -> None:
        extra: dict[str, Any] = {"required": required, "available": available}
        if symbols:
            extra["symbols"] = symbols
        super().__init__(f"The optimiser needs at least {required} daily returns; {available} available.",
                         extra=extra)


class MissingPrices(Unprocessable):
    """A price series has gaps, zeros or negative values, or a symbol has no stored closes."""

    code, title = "missing_prices", "Missing prices"

    def __init__(self, detail: str, *, symbols: list[str]) -> None:
        super().__init__(detail, extra={"symbols": symbols})


class InfeasibleBounds(Unprocessable):
    code, title = "infeasible_bounds", "Weight bounds cannot be met"


class TargetReturnUnreachable(Unprocessable):
    code, title = "target_return_unreachable", "Target return cannot be reached"

    def __init__(self, *, target: float, maximum: float) -> None:
        super().__init__(f"No portfolio within the bounds expects {target:.6g} a year; the most is {maximum:.6g}.",
                         extra={"target_return": target, "max_return": maximum})


class NoPositiveExcessReturn(Unprocessable):
    """Maximum Sharpe is undefined when no allowed portfolio expects more than the risk-free rate."""

    code, title = "no_positive_excess_return", "No portfolio beats the risk-free rate"


class OptimizationFailed(Unprocessable):
    code, title = "optimization_failed", "The optimiser did not converge"


class InvalidTargetAllocation(Unprocessable):
    """A rebalance target that cannot be a portfolio: negative, not summing to 1, unknown asset."""

    title = "Invalid target allocation"
