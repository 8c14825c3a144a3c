"""What a performance report is made of: one account's equity history and its analytics.

The renderers (``portfolio.report``) are pure: they turn a :class:`ReportInput` into HTML,
PDF or PNG and never touch the database. The caller (the analytics service) reads the
stored equity history, and builds the input with :meth:`ReportInput.from_equity`, which
computes the metrics itself, so nothing else has to be glued together.

Too little history is a domain error, not an empty report: with fewer than two equity
points there is no return, no chart and nothing to report, so :class:`InsufficientHistory`
(422 ``insufficient_history``) says so plainly. A report with two or more points always
renders; a figure that its history cannot define (a Sharpe ratio of one day) shows "—".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tradepilot.core.errors import Unprocessable
from tradepilot.portfolio import metrics
from tradepilot.portfolio.metrics import MonthlyReturns, PerformanceReport

__all__ = ["MIN_POINTS", "AllocationSlice", "InsufficientHistory", "ReportInput"]

MIN_POINTS = 2
"""Equity points a report needs: one return takes two."""

Number = float | int | Decimal


class InsufficientHistory(Unprocessable):
    code, title = "insufficient_history", "Not enough history for a report"


@dataclass(frozen=True, slots=True)
class AllocationSlice:
    """One asset's share of the account now: its value in the report's currency and its
    weight (a fraction of the total, as the caller computed it)."""

    asset: str
    value: float
    weight: float


Allocation = Mapping[str, tuple[Number, Number]] | Sequence[AllocationSlice]


def _allocation(allocation: Allocation | None) -> tuple[AllocationSlice, ...]:
    """The holdings (a mapping asset -> (value, weight), or slices), largest weight first,
    ties by name."""
    if not allocation:
        return ()
    if isinstance(allocation, Mapping):
        slices = [
            AllocationSlice(str(asset), float(value), float(weight))
            for asset, (value, weight) in allocation.items()
        ]
    else:
        slices = list(allocation)
    return tuple(sorted(slices, key=lambda s: (-_finite_or_zero(s.weight), s.asset)))


def _finite_or_zero(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _floats(values: ArrayLike | Sequence[Number] | None) -> NDArray[np.float64]:
    """Numbers of any kind (Decimal from the ledger, floats, None) as one float64 array."""
    if values is None:
        return np.empty(0, dtype=np.float64)
    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64).ravel()
    return np.array([math.nan if v is None else float(v) for v in arr.ravel().tolist()])


def _require_history(points: int) -> None:
    if points < MIN_POINTS:
        raise InsufficientHistory(
            f"a performance report needs at least {MIN_POINTS} equity points, "
            f"this period has {points}"
        )


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already (the project's convention)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, eq=False)
class ReportInput:
    """Everything a performance report shows, already computed.

    ``dates`` label the equity points (UTC days, ascending), ``equity`` is the account's
    value at the end of each, ``flows`` the net deposit (+) or withdrawal (-) booked on each
    (``portfolio.metrics`` conventions). ``report`` must be the metrics of that same series;
    :meth:`from_equity` computes it. ``allocation`` maps an asset to ``(value, weight)``.
    ``monthly`` is derived here, so the heat map and the table always agree with the curve.
    """

    title: str
    account_label: str
    period_label: str
    generated_at: datetime
    currency: str
    dates: NDArray[np.datetime64]
    equity: NDArray[np.float64]
    flows: NDArray[np.float64]
    report: PerformanceReport
    allocation: Allocation = ()
    monthly: MonthlyReturns = field(init=False)

    def __post_init__(self) -> None:
        equity = _floats(self.equity)
        _require_history(equity.size)
        dates = metrics.utc_datetimes(self.dates)
        flows = (
            np.zeros(equity.size)
            if self.flows is None
            else np.nan_to_num(_floats(self.flows), nan=0.0)
        )
        if dates.size != equity.size or flows.size != equity.size:
            raise ValueError(
                f"dates ({dates.size}), equity ({equity.size}) and flows ({flows.size}) "
                "must have one value per equity point"
            )
        if self.report.drawdown.size != equity.size:
            raise ValueError("report was computed from a different equity series")
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "dates", dates)
        set_(self, "equity", equity)
        set_(self, "flows", flows)
        set_(self, "generated_at", _utc(self.generated_at))
        set_(self, "allocation", _allocation(self.allocation))
        set_(self, "monthly", metrics.monthly_returns(dates, equity, flows))

    @classmethod
    def from_equity(
        cls,
        *,
        title: str,
        account_label: str,
        period_label: str,
        generated_at: datetime,
        currency: str,
        dates: ArrayLike | Sequence[Any],
        equity: ArrayLike | Sequence[Number],
        flows: ArrayLike | Sequence[Number] | None = None,
        allocation: Allocation | None = None,
        trade_pnls: ArrayLike | Sequence[Number] | None = None,
        benchmark: ArrayLike | None = None,
        benchmark_dates: ArrayLike | Sequence[Any] | None = None,
        periods_per_year: float = metrics.DEFAULT_PERIODS_PER_YEAR,
        risk_free: float = 0.0,
        mar: float = 0.0,
    ) -> ReportInput:
        """The input for an equity history: computes ``performance_report`` (and the monthly
        table) from the same series, so the caller passes only what it stored."""
        equity_floats = _floats(equity)
        _require_history(equity_floats.size)  # before any metric: the clearer message
        flow_floats = None if flows is None else _floats(flows)
        report = metrics.performance_report(
            equity_floats,
            flow_floats,
            dates,
            benchmark=benchmark,
            benchmark_dates=benchmark_dates,
            trade_pnls=trade_pnls,
            periods_per_year=periods_per_year,
            risk_free=risk_free,
            mar=mar,
        )
        return cls(
            title=title,
            account_label=account_label,
            period_label=period_label,
            generated_at=generated_at,
            currency=currency,
            dates=np.asarray(dates),
            equity=equity_floats,
            flows=flow_floats,  # type: ignore[arg-type]  # None -> zeros in __post_init__
            report=report,
            allocation=allocation or (),
        )
