"""The report's numbers as text: one formatting of every figure, shared by HTML and PDF.

Both renderers show the same rows, so a figure reads the same on screen and on paper, and
the tests can check the page against the :class:`PerformanceReport` it came from. A figure
that is undefined (NaN: too little history, no losing trade, no benchmark) shows as "—".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tradepilot.portfolio.metrics import MONTHS, DrawdownPeriod, PerformanceReport
from tradepilot.portfolio.report_input import ReportInput

__all__ = [
    "MISSING",
    "MetricRow",
    "allocation_rows",
    "convention_rows",
    "drawdown_rows",
    "format_count",
    "format_date",
    "format_money",
    "format_percent",
    "format_ratio",
    "metric_rows",
    "monthly_header",
    "monthly_rows",
    "period_covered",
]

MISSING = "—"
"""How an undefined figure is shown."""

Kind = Literal["percent", "ratio", "money", "count"]


def _finite(x: Any) -> bool:
    return isinstance(x, numbers.Real) and math.isfinite(x)


def format_percent(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.1234 -> "12.34 %"``."""
    return f"{x * 100:.{digits}f} %" if _finite(x) else MISSING


def format_ratio(x: float | None) -> str:
    return f"{x:.2f}" if _finite(x) else MISSING


def format_money(x: float | None, currency: str) -> str:
    return f"{x:,.2f} {currency}" if _finite(x) else MISSING


def format_count(n: float | None) -> str:
    return f"{int(n):,}" if _finite(n) else MISSING


def format_date(label: Any) -> str:
    """A drawdown's or a series' label: the UTC day of a datetime, an index as is."""
    if label is None:
        return MISSING
    if isinstance(label, datetime):
        return label.strftime("%Y-%m-%d")
    return str(label)


def _formatter(kind: Kind, currency: str) -> Callable[[Any], str]:
    return {
        "percent": format_percent,
        "ratio": format_ratio,
        "money": lambda x: format_money(x, currency),
        "count": format_count,
    }[kind]


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One line of the metrics table: ``key`` names the figure (``sharpe``, ``var_0.95``,
    ``trades.win_rate``), ``value`` is the number shown as ``text``."""

    key: str
    section: str
    label: str
    value: float | int | None
    text: str
    definition: str


@dataclass(frozen=True, slots=True)
class _Spec:
    key: str
    label: str
    kind: Kind
    definition: str


_RETURNS = (
    _Spec("time_weighted_return", "Time-weighted return", "percent",
          "Π(1 + r_t) − 1 of the daily returns, deposits and withdrawals excluded: how the "
          "strategy did."),
    _Spec("annualized_return", "CAGR", "percent",
          "(1 + time-weighted return)^(P / N) − 1: the time-weighted return per year."),
    _Spec("money_weighted_return", "Money-weighted return (per year)", "percent",
          "The internal rate of return (XIRR) of the opening value, every deposit and "
          "withdrawal and the final value: how your money did."),
    _Spec("money_weighted_return_period", "Money-weighted return (period)", "percent",
          "(1 + money-weighted return)^years − 1: the same rate over the whole period."),
    _Spec("best_period", "Best day", "percent", "The largest single-period return."),
    _Spec("worst_period", "Worst day", "percent", "The smallest single-period return."),
)  # fmt: skip
_RISK = (
    _Spec("volatility", "Volatility (annual)", "percent",
          "Sample standard deviation of the returns × √P."),
    _Spec("downside_deviation", "Downside deviation (annual)", "percent",
          "√(mean(min(r_t − MAR_p, 0)²)) × √P over all returns."),
    _Spec("sharpe", "Sharpe ratio", "ratio",
          "mean(r − rf_p) / std(r − rf_p) × √P."),
    _Spec("sortino", "Sortino ratio", "ratio",
          "mean(r − MAR_p) × P / downside deviation."),
    _Spec("calmar", "Calmar ratio", "ratio", "CAGR / |max drawdown|."),
    _Spec("omega", "Omega ratio", "ratio",
          "Σ returns above the threshold / Σ shortfalls below it."),
    _Spec("tail_ratio", "Tail ratio", "ratio",
          "|95th percentile| / |5th percentile| of the returns."),
)  # fmt: skip
_DRAWDOWNS = (
    _Spec("max_drawdown", "Max drawdown", "percent",
          "The deepest fall of the time-weighted wealth index below its running peak."),
    _Spec("current_drawdown", "Current drawdown", "percent",
          "How far the wealth index is below its peak at the end of the period."),
    _Spec("longest_drawdown", "Longest drawdown (days)", "count",
          "Periods from a peak to its recovery (or to the end, while still under water)."),
)  # fmt: skip
_BENCHMARK = (
    _Spec("beta", "Beta", "ratio", "cov(r, b) / var(b) against the benchmark's returns."),
    _Spec("correlation", "Correlation", "ratio", "Pearson correlation with the benchmark."),
    _Spec("alpha", "Alpha (annual)", "percent",
          "Jensen's alpha, annualised geometrically: (1 + mean((r − rf_p) − β(b − rf_p)))^P − 1."),
)  # fmt: skip
_TRADES = (
    _Spec("count", "Closed trades", "count", "Trades with a realised P&L in the period."),
    _Spec("win_rate", "Win rate", "percent", "Winning trades / trades."),
    _Spec("profit_factor", "Profit factor", "ratio", "Gross profit / |gross loss|."),
    _Spec("expectancy", "Expectancy", "money", "Mean P&L per trade."),
    _Spec("average_win", "Average win", "money", "Mean P&L of the winning trades."),
    _Spec("average_loss", "Average loss", "money", "Mean P&L of the losing trades."),
    _Spec("payoff_ratio", "Payoff ratio", "ratio", "Average win / |average loss|."),
    _Spec("best", "Best trade", "money", "The largest realised P&L."),
    _Spec("worst", "Worst trade", "money", "The smallest realised P&L."),
    _Spec("total", "Total realised P&L", "money", "Sum of the trades' P&L."),
)  # fmt: skip


def _rows(section: str, specs: tuple[_Spec, ...], source: Any, currency: str,
          prefix: str = "") -> Iterator[MetricRow]:
    for spec in specs:
        value = getattr(source, spec.key)
        text = _formatter(spec.kind, currency)(value)
        yield MetricRow(prefix + spec.key, section, spec.label, value, text, spec.definition)


def _var_rows(report: PerformanceReport) -> Iterator[MetricRow]:
    historical = report.var_method == "historical"
    for level in report.var_levels:
        pct = f"{level * 100:g} %"
        var_def = (
            f"Minus the {100 - level * 100:g}th percentile of the daily returns"
            if historical
            else f"−(mean + z·std), z the normal {100 - level * 100:g} % quantile"
        )
        cvar_def = (
            f"Minus the mean of the returns at or below the {100 - level * 100:g}th percentile"
            if historical
            else "std · φ(z) / (1 − level) − mean (normal)"
        )
        var, cvar = report.var.get(level), report.cvar.get(level)
        yield MetricRow(f"var_{level:g}", "Value at risk", f"VaR {pct} (1 day)", var,
                        format_percent(var), var_def + "; a loss as a positive number.")
        yield MetricRow(f"cvar_{level:g}", "Value at risk", f"CVaR {pct} (1 day)", cvar,
                        format_percent(cvar), cvar_def + " (expected shortfall).")


def metric_rows(data: ReportInput) -> list[MetricRow]:
    """Every figure of the report, in display order. The benchmark section appears only
    when a benchmark was given, the trades section only with trades."""
    report, currency = data.report, data.currency
    rows = [
        *_rows("Returns", _RETURNS, report, currency),
        *_rows("Risk", _RISK, report, currency),
        *_var_rows(report),
        *_rows("Drawdowns", _DRAWDOWNS, report, currency),
    ]
    if any(_finite(getattr(report, spec.key)) for spec in _BENCHMARK):
        rows += _rows("Benchmark", _BENCHMARK, report, currency)
    if report.trades is not None:
        rows += _rows("Trades", _TRADES, report.trades, currency, prefix="trades.")
    return rows


def convention_rows(report: PerformanceReport) -> list[tuple[str, str]]:
    """``report.conventions()`` as (name, value) text pairs: the method behind the figures."""
    def text(value: Any) -> str:
        if isinstance(value, list | tuple):
            return ", ".join(text(v) for v in value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    return [(name, text(value)) for name, value in report.conventions().items()]


DRAWDOWN_HEADER = ("#", "Peak", "Trough", "Recovered", "Depth", "Length (days)",
                   "Recovery (days)")  # fmt: skip


def _drawdown_row(rank: int, period: DrawdownPeriod) -> tuple[str, ...]:
    return (
        str(rank),
        format_date(period.start),
        format_date(period.trough),
        format_date(period.end) if period.recovered else "not yet",
        format_percent(period.depth),
        format_count(period.length),
        format_count(period.recovery_length) if period.recovery_length is not None else MISSING,
    )


def drawdown_rows(report: PerformanceReport) -> list[tuple[str, ...]]:
    """The deepest drawdowns (the report's ``top_drawdowns``, five by default)."""
    return [_drawdown_row(i, p) for i, p in enumerate(report.top_drawdowns, start=1)]


def monthly_header() -> tuple[str, ...]:
    return ("Year", *MONTHS, "Year total")


def monthly_rows(data: ReportInput) -> list[tuple[str, ...]]:
    """One row per year: the year, its twelve monthly returns and the year's return."""
    table = data.monthly
    return [
        (str(year), *(format_percent(v, 1) for v in table.values[i]),
         format_percent(table.yearly[i], 1))
        for i, year in enumerate(table.years)
    ]  # fmt: skip


def allocation_rows(data: ReportInput) -> list[tuple[str, str, str]]:
    """(asset, value, weight) for each holding, largest weight first."""
    return [
        (s.asset, format_money(s.value, data.currency), format_percent(s.weight))
        for s in data.allocation
    ]


def period_covered(data: ReportInput) -> str:
    """``first day – last day (N days)`` of the series shown."""
    first, last = (d.astype("datetime64[D]") for d in (data.dates[0], data.dates[-1]))
    days = int((last - first).astype(int))
    return f"{first} – {last} ({days:,} days)"
