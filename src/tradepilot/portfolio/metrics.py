"""Performance and risk metrics: one numpy library with one convention.

The backtester, the analytics endpoints, the AI risk assessment and the risk alerts all call
this module; none computes a Sharpe ratio of its own. ``docs/metrics.md`` defines every
figure. The convention, stated once:

* **Floats, converted at the boundary.** Money is ``Decimal`` in the domain; here every
  input (``Decimal``, ``int``, ``float``, numpy) becomes a ``float64`` array, and every
  result is a float. Non-finite inputs (NaN, ``None``, inf) are *missing observations*.
* **Simple returns** per period, never log returns: ``r_t = (E_t - F_t) / E_(t-1) - 1``
  where ``E`` is the equity at the end of period ``t`` and ``F_t`` the net external flow
  (deposit ``+``, withdrawal ``-``) booked in period ``t``. A flow is assumed to arrive at
  the *end* of its period, so it is excluded from that period's return: a deposit is never
  a return. ``flows[0]`` belongs to the opening equity ``E_0`` and is ignored. A period
  whose opening equity ``E_(t-1)`` is not positive (an empty account) has no return (NaN).
* **Missing observations are dropped** before any statistic; in the wealth index (and so
  in drawdowns and compounding) a missing period leaves the index unchanged.
* **Annualisation**: ``periods_per_year`` (default ``365``: crypto trades every day, so
  daily data has 365 periods a year), a parameter of every annualised figure and echoed in
  the :class:`PerformanceReport` as ``annualization``. Means scale by ``periods_per_year``,
  deviations by ``sqrt(periods_per_year)``, compounding by ``** periods_per_year``.
  The series is assumed regular (one observation per period).
* **Rates are annual** (risk-free rate, minimum acceptable return, Omega threshold) and
  are converted to one period geometrically: ``r_p = (1 + r_annual) ** (1 / periods_per_year) - 1``.
* **Sample standard deviation** (``ddof=1``) for volatility, Sharpe and the parametric
  VaR, as empyrical does. The *downside deviation* is the target semideviation over all
  ``N`` observations: ``sqrt(mean(min(r - mar_p, 0) ** 2))`` (also as empyrical).
  A series whose values are all equal has a standard deviation of exactly 0.
* **Signs**: drawdowns are fractions ``<= 0`` (``-0.25`` = 25 % below the peak); VaR and
  CVaR are *losses as positive numbers* (``0.04`` = a 4 % loss over one period; negative
  when even the tail is a gain). VaR/CVaR are for one period, not scaled in time.
* **Undefined is NaN, never an exception**: a figure that needs more observations than it
  has (volatility needs 2, a return needs 1), or whose denominator is 0 (Sharpe of a
  constant series, Sortino or Omega with no downside, Calmar with no drawdown, profit
  factor with no losing trade), is ``nan`` -- never ``inf`` and never a ZeroDivisionError.
  :meth:`PerformanceReport.as_dict` turns NaN into ``None`` (JSON ``null``).
* **Drawdowns** are measured on the time-weighted wealth index ``W_0 = 1``,
  ``W_t = W_(t-1) * (1 + r_t)``, so deposits neither hide nor create a drawdown.
  A drawdown shallower than ``1e-12`` counts as at the peak (float round-off).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time
from typing import Any, Literal, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_PERIODS_PER_YEAR",
    "DEFAULT_VAR_LEVELS",
    "MONTHS",
    "DrawdownPeriod",
    "ExposureStats",
    "MonthlyReturns",
    "PerformanceReport",
    "TradeStats",
    "align",
    "alpha",
    "annualized_return",
    "beta",
    "calmar_ratio",
    "conditional_value_at_risk",
    "correlation",
    "cumulative_return",
    "downside_deviation",
    "drawdown_periods",
    "drawdown_series",
    "effective_holdings",
    "exposure",
    "herfindahl",
    "max_drawdown",
    "max_drawdown_period",
    "money_weighted_return",
    "monthly_returns",
    "omega_ratio",
    "performance_report",
    "periodic_rate",
    "rolling_sharpe",
    "rolling_volatility",
    "sharpe_ratio",
    "simple_returns",
    "sortino_ratio",
    "tail_ratio",
    "time_in_market",
    "time_weighted_return",
    "trade_statistics",
    "utc_datetimes",
    "value_at_risk",
    "volatility",
    "wealth_index",
]

FloatArray = NDArray[np.float64]
VarMethod = Literal["historical", "parametric"]
Label = datetime | int | str | float

DEFAULT_PERIODS_PER_YEAR = 365
"""Daily crypto data: markets trade every day of the year."""
DEFAULT_VAR_LEVELS: tuple[float, ...] = (0.95, 0.99)
STD_DDOF = 1
"""Sample standard deviation everywhere a standard deviation is taken."""
XIRR_DAYS_PER_YEAR = 365.0
"""Money-weighted return with dates: a year is 365 calendar days (as spreadsheet XIRR)."""
AT_PEAK_TOLERANCE = 1e-12
"""A drawdown shallower than this counts as being at the peak."""

_MWR_GRID = np.linspace(-40.0, 40.0, 401)  # log growth over the whole span: e**-40 .. e**40


# --------------------------------------------------------------------------- conversion


def _floats(values: ArrayLike | Sequence[Any] | None) -> FloatArray:
    """Any sequence of numbers (Decimal, int, float, None) as a float64 array; None -> NaN."""
    if values is None:
        return np.empty(0, dtype=np.float64)
    arr = np.asarray(values)
    if arr.dtype == np.float64:
        return arr
    if arr.dtype.kind in "iufb":
        return arr.astype(np.float64)
    flat = [math.nan if v is None else float(v) for v in arr.ravel().tolist()]
    return np.asarray(flat, dtype=np.float64).reshape(arr.shape)


def _finite(returns: ArrayLike) -> FloatArray:
    """The finite observations of a 1-D series (missing ones dropped)."""
    r = _floats(returns).ravel()
    mask = np.isfinite(r)
    return r if mask.all() else r[mask]


def _to_utc_naive(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment: datetime = value
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if isinstance(value, date):
        return datetime.combine(value, time())
    raise TypeError(f"not a date: {value!r}")


def _labels(dates: ArrayLike | Sequence[Any] | None, n: int, name: str) -> np.ndarray | None:
    """Dates as ``datetime64[us]`` (UTC), other labels (ints, strings) as they are."""
    if dates is None:
        return None
    arr = np.asarray(dates)
    if arr.dtype == object and arr.size and isinstance(arr.flat[0], date):
        arr = np.array([_to_utc_naive(v) for v in arr.tolist()], dtype="datetime64[us]")
    elif arr.dtype.kind == "M":
        arr = arr.astype("datetime64[us]")
    elif arr.dtype.kind in "US":
        try:
            arr = arr.astype("datetime64[us]")
        except ValueError:
            pass
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.size} labels, expected {n}")
    return arr


def _label(labels: np.ndarray | None, i: int) -> Label:
    if labels is None:
        return int(i)
    value = labels[i]
    if isinstance(value, np.generic):  # datetime64[us] -> datetime.datetime (UTC, naive)
        return cast(Label, value.item())
    return cast(Label, value)


def _nan_if_not_finite(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def _std(r: FloatArray) -> float:
    """Sample standard deviation (ddof=1) of finite values; exactly 0 for a constant series."""
    if r.size <= STD_DDOF:
        return math.nan
    if r.max() == r.min():
        return 0.0
    return float(np.std(r, ddof=STD_DDOF))


def periodic_rate(annual_rate: float, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """An annual rate for one period: ``(1 + annual_rate) ** (1 / periods_per_year) - 1``."""
    if annual_rate <= -1.0 or periods_per_year <= 0:
        return math.nan
    if annual_rate == 0.0:
        return 0.0
    return math.expm1(math.log1p(annual_rate) / periods_per_year)


# --------------------------------------------------------------------------- returns


def simple_returns(equity: ArrayLike, flows: ArrayLike | None = None) -> FloatArray:
    """Period returns net of external flows: ``r_t = (E_t - F_t) / E_(t-1) - 1``.

    ``equity[t]`` is the end-of-period equity, ``flows[t]`` the net deposit (+) or
    withdrawal (-) booked in period ``t`` (same length; ``flows[0]`` is part of the opening
    equity). Returns ``len(equity) - 1`` values; NaN where ``E_(t-1) <= 0`` or missing.
    """
    e = _floats(equity).ravel()
    if e.size < 2:
        return np.empty(0, dtype=np.float64)
    end = e[1:]
    if flows is not None:
        f = _floats(flows).ravel()
        if f.size != e.size:
            raise ValueError(f"flows has {f.size} values, equity {e.size}")
        end = end - np.nan_to_num(f[1:], nan=0.0)
    base = e[:-1]
    ok = base > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ok, end / np.where(ok, base, 1.0) - 1.0, np.nan)
    r[~np.isfinite(r)] = np.nan
    return r


def wealth_index(returns: ArrayLike) -> FloatArray:
    """``W_0 = 1, W_t = W_(t-1) * (1 + r_t)``; ``len(returns) + 1`` values, missing r -> flat."""
    r = np.nan_to_num(_floats(returns).ravel(), nan=0.0, posinf=0.0, neginf=0.0)
    out = np.empty(r.size + 1, dtype=np.float64)
    out[0] = 1.0
    np.cumprod(1.0 + r, out=out[1:])
    return out


def cumulative_return(returns: ArrayLike) -> float:
    """Compounded return over the series: ``prod(1 + r_t) - 1``; NaN without returns."""
    r = _finite(returns)
    if r.size == 0:
        return math.nan
    return float(np.prod(1.0 + r) - 1.0)


def time_weighted_return(equity: ArrayLike, flows: ArrayLike | None = None) -> float:
    """Time-weighted return (TWR): ``prod(1 + r_t) - 1`` of :func:`simple_returns`.

    Independent of when and how much money was deposited or withdrawn: it is the return of
    one unit invested at the start and left alone. Not annualised.
    """
    return cumulative_return(simple_returns(equity, flows))


def annualized_return(
    returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> float:
    """CAGR: ``(1 + cumulative_return) ** (periods_per_year / n) - 1``, n = observations.

    ``-1.0`` if everything was lost; NaN without returns.
    """
    r = _finite(returns)
    if r.size == 0:
        return math.nan
    growth = float(np.prod(1.0 + r))
    if growth <= 0.0:
        return -1.0
    try:
        return _nan_if_not_finite(math.expm1(math.log(growth) * periods_per_year / r.size))
    except OverflowError:
        return math.nan


def money_weighted_return(
    equity: ArrayLike,
    flows: ArrayLike | None = None,
    dates: ArrayLike | Sequence[Any] | None = None,
    *,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    annualize: bool = True,
) -> float:
    """Money-weighted return (MWR): the internal rate of return R (XIRR) solving

    ``sum_t c_t * (1 + R) ** -s_t = 0`` with ``c_0 = -E_0``, ``c_t = -F_t`` and
    ``c_n += E_n`` (the investor pays in the opening value and every deposit, and gets the
    withdrawals and the final value); ``s_t`` in years is ``days / 365`` with ``dates``,
    else ``t / periods_per_year``. Annual rate by default; ``annualize=False`` gives the
    rate over the whole span, ``(1 + R) ** years - 1``.

    Solved with Brent's method in the log growth over the span, bracketed by a scan of
    ``e**-40 .. e**40``; if several roots exist the one closest to the time-weighted
    growth is taken. ``-1.0`` when money went in and nothing came out (total loss); NaN
    when no rate solves it (no flows, zero span, or no sign change).
    """
    growth, span = _mwr_log_growth(equity, flows, dates, periods_per_year)
    return _mwr_rate(growth, span, annualize)


def _mwr_rate(growth: float, span: float, annualize: bool) -> float:
    if math.isnan(growth):
        return math.nan
    if growth == -math.inf:
        return -1.0
    try:
        return _nan_if_not_finite(math.expm1(growth / span if annualize else growth))
    except OverflowError:
        return math.nan


def _mwr_log_growth(
    equity: ArrayLike,
    flows: ArrayLike | None,
    dates: ArrayLike | Sequence[Any] | None,
    periods_per_year: float,
) -> tuple[float, float]:
    """``(g, span)``: the money-weighted log growth over the span and the span in years;
    ``g = -inf`` for a total loss, NaN when undefined."""
    e = _floats(equity).ravel()
    n = e.size
    if n < 2 or not np.isfinite(e).all():
        return math.nan, math.nan
    f = np.zeros(n) if flows is None else np.nan_to_num(_floats(flows).ravel(), nan=0.0)
    if f.size != n:
        raise ValueError(f"flows has {f.size} values, equity {n}")
    labels = _labels(dates, n, "dates")
    if labels is None:
        years = np.arange(n, dtype=np.float64) / periods_per_year
    else:
        if labels.dtype.kind != "M":
            raise ValueError("dates must be dates or datetimes for a money-weighted return")
        seconds = (labels - labels[0]).astype("timedelta64[us]").astype(np.float64) / 1e6
        years = seconds / (86400.0 * XIRR_DAYS_PER_YEAR)
    cash = -f
    cash[0] = -e[0]
    cash[-1] += e[-1]
    nonzero = np.flatnonzero(cash)
    if nonzero.size == 0:
        return math.nan, math.nan
    cash, years = cash[nonzero], years[nonzero]
    span = float(years[-1] - years[0])
    if (cash <= 0).all():  # money went in, nothing came out
        return -math.inf, span
    if (cash >= 0).all() or not span > 0:
        return math.nan, span
    # future value at the end of the span as a function of the log growth g over the span:
    # FV(g) = sum c_t * exp(g * (1 - u_t)),  u_t = (s_t - s_0) / span in [0, 1]
    weight = 1.0 - (years - years[0]) / span

    def fv(g: float) -> float:
        return float(np.dot(cash, np.exp(g * weight)))

    grid = np.exp(np.outer(_MWR_GRID, weight)) @ cash
    sign = np.sign(grid)
    roots = [float(_MWR_GRID[i]) for i in np.flatnonzero(sign == 0)]
    brackets = np.flatnonzero(sign[:-1] * sign[1:] < 0)
    if brackets.size:
        from scipy.optimize import brentq  # lazy: scipy.optimize takes ~0.1 s to import

        for i in brackets:
            lo, hi = float(_MWR_GRID[i]), float(_MWR_GRID[i + 1])
            roots.append(float(brentq(fv, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=200)))
    if not roots:
        return math.nan, span
    twr = time_weighted_return(e, f)
    target = math.log1p(twr) if math.isfinite(twr) and twr > -1.0 else 0.0
    return min(roots, key=lambda root: abs(root - target)), span


# --------------------------------------------------------------------------- risk


def volatility(returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Annualised volatility: ``std(r, ddof=1) * sqrt(periods_per_year)``; needs 2 returns."""
    return _std(_finite(returns)) * math.sqrt(periods_per_year)


def downside_deviation(
    returns: ArrayLike,
    mar: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    """Annualised target downside deviation below the minimum acceptable return (annual):

    ``sqrt(mean(min(r_t - mar_p, 0) ** 2)) * sqrt(periods_per_year)`` over all N returns.
    """
    r = _finite(returns)
    if r.size == 0:
        return math.nan
    shortfall = np.minimum(r - periodic_rate(mar, periods_per_year), 0.0)
    return math.sqrt(float(np.mean(shortfall * shortfall))) * math.sqrt(periods_per_year)


def sharpe_ratio(
    returns: ArrayLike,
    risk_free: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    """Annualised Sharpe ratio: ``mean(x) / std(x, ddof=1) * sqrt(periods_per_year)``,
    ``x = r - rf_p``; NaN with fewer than 2 returns or zero volatility."""
    x = _finite(returns) - periodic_rate(risk_free, periods_per_year)
    sd = _std(x)
    if not sd > 0:
        return math.nan
    return float(np.mean(x)) / sd * math.sqrt(periods_per_year)


def sortino_ratio(
    returns: ArrayLike,
    mar: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    """Annualised Sortino ratio: ``mean(r - mar_p) * periods_per_year / downside_deviation``;
    NaN with fewer than 2 returns or no downside."""
    r = _finite(returns)
    if r.size < 2:
        return math.nan
    dd = downside_deviation(r, mar, periods_per_year)
    if not dd > 0:
        return math.nan
    return float(np.mean(r - periodic_rate(mar, periods_per_year))) * periods_per_year / dd


def calmar_ratio(returns: ArrayLike, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR) -> float:
    """Calmar ratio: ``annualized_return / |max_drawdown|``; NaN without a drawdown."""
    mdd = max_drawdown(returns)
    if not mdd < 0:
        return math.nan
    return _nan_if_not_finite(annualized_return(returns, periods_per_year) / -mdd)


def omega_ratio(
    returns: ArrayLike,
    threshold: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> float:
    """Omega ratio at an annual threshold: ``sum(max(r - t_p, 0)) / sum(max(t_p - r, 0))``;
    NaN with fewer than 2 returns or nothing below the threshold."""
    r = _finite(returns)
    if r.size < 2:
        return math.nan
    x = r - periodic_rate(threshold, periods_per_year)
    down = -float(np.sum(x[x < 0.0]))
    if not down > 0:
        return math.nan
    return float(np.sum(x[x > 0.0])) / down


def tail_ratio(returns: ArrayLike) -> float:
    """``|P95(r)| / |P5(r)|`` (percentiles with linear interpolation); NaN if P5 is 0."""
    r = _finite(returns)
    if r.size == 0:
        return math.nan
    p5, p95 = np.percentile(r, [5.0, 95.0])
    if p5 == 0.0:
        return math.nan
    return float(abs(p95) / abs(p5))


# --------------------------------------------------------------------------- drawdowns


@dataclass(frozen=True, slots=True)
class DrawdownPeriod:
    """One stretch under water, on the time-weighted wealth index.

    ``start`` is the peak (last point at the running high), ``trough`` the lowest point,
    ``end`` the first point back at the peak (``None`` while still under water). Labels are
    the equity dates (``datetime``, UTC) when given, else indices into the equity series.
    ``depth`` is ``W_trough / W_peak - 1`` (``<= 0``); ``length`` counts periods from the
    peak to the recovery, or to the last point while ongoing; ``recovery_length`` counts
    periods from the trough to the recovery (``None`` while ongoing).
    """

    start: Label
    trough: Label
    end: Label | None
    depth: float
    length: int
    recovery_length: int | None
    start_index: int
    trough_index: int
    end_index: int | None

    @property
    def recovered(self) -> bool:
        return self.end_index is not None


def drawdown_series(returns: ArrayLike) -> FloatArray:
    """``W_t / max(W_0..W_t) - 1`` for every point of the wealth index (``len(returns) + 1``
    values, the first 0): the drawdown at each equity point, ``<= 0``."""
    w = wealth_index(returns)
    return w / np.maximum.accumulate(w) - 1.0  # the running peak is >= W_0 = 1


def max_drawdown(returns: ArrayLike) -> float:
    """Deepest drawdown, ``min(drawdown_series)`` (``<= 0``); NaN without returns."""
    r = _floats(returns).ravel()
    if r.size == 0 or not np.isfinite(r).any():
        return math.nan
    return float(np.min(drawdown_series(r)))


def _episodes(dd: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.intp], FloatArray]:
    """Under-water runs of a drawdown series: first under-water index, stop (exclusive,
    == the recovery index when < len), depth."""
    under = dd < -AT_PEAK_TOLERANCE
    if not under.any():
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, np.empty(0)
    edges = np.diff(under.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    firsts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    # each reduceat segment runs to the next episode's start; the points at the peak in
    # between are >= -tolerance, so they never lower the minimum
    depths = np.minimum.reduceat(dd, firsts)
    return firsts, stops, depths


def _period(dd: FloatArray, first: int, stop: int, labels: np.ndarray | None) -> DrawdownPeriod:
    m = dd.size
    start = first - 1
    trough = first + int(np.argmin(dd[first:stop]))
    end = stop if stop < m else None
    return DrawdownPeriod(
        start=_label(labels, start),
        trough=_label(labels, trough),
        end=None if end is None else _label(labels, end),
        depth=float(dd[trough]),
        length=(end if end is not None else m - 1) - start,
        recovery_length=None if end is None else end - trough,
        start_index=start,
        trough_index=trough,
        end_index=end,
    )


def drawdown_periods(
    returns: ArrayLike,
    equity_dates: ArrayLike | Sequence[Any] | None = None,
    top_n: int | None = None,
) -> list[DrawdownPeriod]:
    """Every drawdown period, deepest first (ties: earliest first); ``top_n`` keeps the N
    deepest. ``equity_dates`` label the equity points (``len(returns) + 1``)."""
    dd = drawdown_series(returns)
    labels = _labels(equity_dates, dd.size, "equity_dates")
    firsts, stops, depths = _episodes(dd)
    order = np.argsort(depths, kind="stable")
    if top_n is not None:
        order = order[: max(top_n, 0)]
    return [_period(dd, int(firsts[i]), int(stops[i]), labels) for i in order]


def max_drawdown_period(
    returns: ArrayLike, equity_dates: ArrayLike | Sequence[Any] | None = None
) -> DrawdownPeriod | None:
    """The deepest drawdown with its peak, trough and recovery; None if never under water."""
    periods = drawdown_periods(returns, equity_dates, top_n=1)
    return periods[0] if periods else None


# --------------------------------------------------------------------------- VaR / CVaR


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def _normal_tail(level: float) -> tuple[float, float]:
    """``z = Phi^-1(1 - level)`` and ``phi(z) / (1 - level)`` for the normal model."""
    from scipy.special import ndtri

    z = float(ndtri(1.0 - level))
    return z, math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) / (1.0 - level)


def value_at_risk(
    returns: ArrayLike, level: float = 0.95, method: VarMethod = "historical"
) -> float:
    """One-period Value at Risk at ``level``, a loss as a positive number.

    historical: ``-P_(1-level)(r)`` (percentile, linear interpolation; needs 1 return);
    parametric (normal): ``-(mean + z * std)``, ``z = Phi^-1(1 - level)`` (needs 2).
    """
    _check_level(level)
    r = _finite(returns)
    if method == "historical":
        if r.size == 0:
            return math.nan
        return -float(np.percentile(r, 100.0 * (1.0 - level))) + 0.0
    if method == "parametric":
        sd = _std(r)
        if math.isnan(sd):
            return math.nan
        z, _ = _normal_tail(level)
        return -(float(np.mean(r)) + z * sd) + 0.0
    raise ValueError(f"unknown VaR method {method!r}")


def conditional_value_at_risk(
    returns: ArrayLike, level: float = 0.95, method: VarMethod = "historical"
) -> float:
    """One-period CVaR (expected shortfall) at ``level``, a loss as a positive number.

    historical: minus the mean of the ``k + 1`` lowest returns, ``k = floor((n - 1) *
    (1 - level))`` (as empyrical); parametric (normal): ``std * phi(z) / (1 - level) - mean``.
    """
    _check_level(level)
    r = _finite(returns)
    if method == "historical":
        if r.size == 0:
            return math.nan
        k = int((r.size - 1) * (1.0 - level))
        return -float(np.mean(np.partition(r, k)[: k + 1])) + 0.0
    if method == "parametric":
        sd = _std(r)
        if math.isnan(sd):
            return math.nan
        _, tail = _normal_tail(level)
        return sd * tail - float(np.mean(r)) + 0.0
    raise ValueError(f"unknown VaR method {method!r}")


# --------------------------------------------------------------------------- benchmark


def align(
    returns: ArrayLike,
    benchmark: ArrayLike,
    return_dates: ArrayLike | Sequence[Any] | None = None,
    benchmark_dates: ArrayLike | Sequence[Any] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Pair a return series with a benchmark's: by date when both have dates (the dates
    they share), else by position (same length). Pairs with a missing side are dropped."""
    r = _floats(returns).ravel()
    b = _floats(benchmark).ravel()
    if return_dates is not None and benchmark_dates is not None:
        rd = _labels(return_dates, r.size, "return_dates")
        bd = _labels(benchmark_dates, b.size, "benchmark_dates")
        assert rd is not None and bd is not None
        _, ri, bi = np.intersect1d(rd, bd, assume_unique=False, return_indices=True)
        r, b = r[ri], b[bi]
    elif r.size != b.size:
        raise ValueError(f"returns ({r.size}) and benchmark ({b.size}) differ in length")
    ok = np.isfinite(r) & np.isfinite(b)
    return r[ok], b[ok]


def beta(
    returns: ArrayLike,
    benchmark: ArrayLike,
    return_dates: ArrayLike | Sequence[Any] | None = None,
    benchmark_dates: ArrayLike | Sequence[Any] | None = None,
) -> float:
    """``cov(r, b) / var(b)`` over aligned pairs; NaN with < 2 pairs or a flat benchmark."""
    r, b = align(returns, benchmark, return_dates, benchmark_dates)
    return _beta(r, b)


def _beta(r: FloatArray, b: FloatArray) -> float:
    if r.size < 2 or b.max() == b.min():
        return math.nan
    bc = b - b.mean()
    return float(np.dot(bc, r - r.mean()) / np.dot(bc, bc))


def correlation(
    returns: ArrayLike,
    benchmark: ArrayLike,
    return_dates: ArrayLike | Sequence[Any] | None = None,
    benchmark_dates: ArrayLike | Sequence[Any] | None = None,
) -> float:
    """Pearson correlation of aligned pairs; NaN with < 2 pairs or a flat series."""
    r, b = align(returns, benchmark, return_dates, benchmark_dates)
    return _correlation(r, b)


def _correlation(r: FloatArray, b: FloatArray) -> float:
    if r.size < 2 or b.max() == b.min() or r.max() == r.min():
        return math.nan
    rc, bc = r - r.mean(), b - b.mean()
    return float(np.dot(rc, bc) / math.sqrt(float(np.dot(rc, rc)) * float(np.dot(bc, bc))))


def alpha(
    returns: ArrayLike,
    benchmark: ArrayLike,
    risk_free: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    return_dates: ArrayLike | Sequence[Any] | None = None,
    benchmark_dates: ArrayLike | Sequence[Any] | None = None,
) -> float:
    """Jensen's alpha, annualised geometrically (as empyrical):
    ``(1 + mean((r - rf_p) - beta * (b - rf_p))) ** periods_per_year - 1``."""
    r, b = align(returns, benchmark, return_dates, benchmark_dates)
    return _alpha(r, b, risk_free, periods_per_year)


def _alpha(r: FloatArray, b: FloatArray, risk_free: float, periods_per_year: float) -> float:
    bt = _beta(r, b)
    if math.isnan(bt):
        return math.nan
    rf = periodic_rate(risk_free, periods_per_year)
    per_period = float(np.mean((r - rf) - bt * (b - rf)))
    if per_period <= -1.0:
        return -1.0
    try:
        return _nan_if_not_finite(math.expm1(math.log1p(per_period) * periods_per_year))
    except OverflowError:
        return math.nan


# --------------------------------------------------------------------------- trades


@dataclass(frozen=True, slots=True)
class TradeStats:
    """Statistics of closed trades' P&L (in the account's quote currency, as floats).

    A trade with P&L exactly 0 is neither a win nor a loss but counts in ``count``, so
    ``expectancy == win_rate * average_win + loss_rate * average_loss``.
    """

    count: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float  # wins / count
    loss_rate: float  # losses / count
    total: float
    gross_profit: float  # sum of winning P&L, >= 0
    gross_loss: float  # sum of losing P&L, <= 0
    profit_factor: float  # gross_profit / |gross_loss|; NaN without a losing trade
    expectancy: float  # mean P&L per trade
    average_win: float  # NaN without a win
    average_loss: float  # <= 0; NaN without a loss
    payoff_ratio: float  # average_win / |average_loss|
    best: float
    worst: float


def trade_statistics(pnls: ArrayLike | Sequence[Any]) -> TradeStats:
    """Win rate, profit factor, expectancy, average win/loss, payoff, best/worst of closed
    trades' P&L (Decimal or float); every figure NaN when there is no trade."""
    p = _finite(pnls)
    n = int(p.size)
    win, loss = p[p > 0], p[p < 0]
    gp, gl = float(win.sum()), float(loss.sum())
    avg_win = float(win.mean()) if win.size else math.nan
    avg_loss = float(loss.mean()) if loss.size else math.nan
    return TradeStats(
        count=n,
        wins=int(win.size),
        losses=int(loss.size),
        breakeven=n - int(win.size) - int(loss.size),
        win_rate=win.size / n if n else math.nan,
        loss_rate=loss.size / n if n else math.nan,
        total=float(p.sum()) if n else math.nan,
        gross_profit=gp if n else math.nan,
        gross_loss=gl if n else math.nan,
        profit_factor=gp / -gl if gl < 0 else math.nan,
        expectancy=float(p.mean()) if n else math.nan,
        average_win=avg_win,
        average_loss=avg_loss,
        payoff_ratio=avg_win / -avg_loss if win.size and loss.size else math.nan,
        best=float(p.max()) if n else math.nan,
        worst=float(p.min()) if n else math.nan,
    )


# --------------------------------------------------------------------------- exposure


@dataclass(frozen=True, slots=True)
class ExposureStats:
    """Exposure from positions' values (signed: long +, short -) against equity.

    ``gross = sum|v| / E``, ``net = sum v / E`` per period; the scalar fields are the last
    period's and the averages over periods with a positive equity.
    """

    time_in_market: float
    gross: float
    net: float
    average_gross: float
    average_net: float
    herfindahl: float
    effective_holdings: float
    largest_weight: float


def _positions_2d(position_values: ArrayLike) -> FloatArray:
    v = np.nan_to_num(_floats(position_values), nan=0.0)
    return v[:, None] if v.ndim == 1 else v


def time_in_market(position_values: ArrayLike) -> float:
    """Fraction of periods with any non-zero position; ``position_values`` is periods x
    assets (or one value per period). NaN without periods."""
    v = _positions_2d(position_values)
    if v.shape[0] == 0:
        return math.nan
    return float(np.mean(np.any(v != 0.0, axis=1)))


def exposure(position_values: ArrayLike, equity: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Gross and net exposure per period: ``sum|v| / E`` and ``sum v / E`` (NaN if E <= 0)."""
    v = _positions_2d(position_values)
    e = _floats(equity).ravel()
    if e.size != v.shape[0]:
        raise ValueError(f"equity has {e.size} periods, positions {v.shape[0]}")
    ok = e > 0
    safe = np.where(ok, e, 1.0)
    gross = np.where(ok, np.abs(v).sum(axis=1) / safe, np.nan)
    net = np.where(ok, v.sum(axis=1) / safe, np.nan)
    return gross, net


def _weights(values: ArrayLike) -> FloatArray:
    a = np.abs(_finite(values))
    total = a.sum()
    return a / total if total > 0 else np.empty(0)


def herfindahl(values: ArrayLike) -> float:
    """Herfindahl concentration ``sum(w_i ** 2)``, ``w_i = |v_i| / sum|v_j|`` over the
    holdings (cash excluded): 1 for one holding, 1/N for N equal ones; NaN without any."""
    w = _weights(values)
    return float(np.dot(w, w)) if w.size else math.nan


def effective_holdings(values: ArrayLike) -> float:
    """Effective number of holdings, ``1 / herfindahl``; NaN without any."""
    h = herfindahl(values)
    return 1.0 / h if h > 0 else math.nan


# --------------------------------------------------------------------------- rolling


def _rolling_mean_std(x: FloatArray, window: int) -> tuple[FloatArray, FloatArray]:
    """Mean and sample std of each trailing window (NaN-aware), aligned to the window's
    last point; the first ``window - 1`` points are NaN."""
    n = x.size
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if window < 2 or n < window:
        return mean, std
    win = sliding_window_view(x, window)
    mask = np.isfinite(win)
    cnt = mask.sum(axis=1)
    filled = np.where(mask, win, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = filled.sum(axis=1) / cnt
        dev = np.where(mask, win - m[:, None], 0.0)
        var = np.einsum("ij,ij->i", dev, dev) / (cnt - STD_DDOF)
    s = np.sqrt(var)
    constant = np.where(mask, win, -np.inf).max(axis=1) == np.where(mask, win, np.inf).min(axis=1)
    s[constant] = 0.0
    s[cnt <= STD_DDOF] = np.nan
    m[cnt == 0] = np.nan
    mean[window - 1 :] = m
    std[window - 1 :] = s
    return mean, std


def rolling_volatility(
    returns: ArrayLike, window: int, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> FloatArray:
    """Annualised volatility of each trailing ``window`` of returns (same length as the
    returns; the first ``window - 1`` are NaN)."""
    _, std = _rolling_mean_std(_floats(returns).ravel(), window)
    return std * math.sqrt(periods_per_year)


def rolling_sharpe(
    returns: ArrayLike,
    window: int,
    risk_free: float = 0.0,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
) -> FloatArray:
    """Annualised Sharpe ratio of each trailing ``window`` (NaN where its volatility is 0)."""
    x = _floats(returns).ravel() - periodic_rate(risk_free, periods_per_year)
    mean, std = _rolling_mean_std(x, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(std > 0, mean / np.where(std > 0, std, 1.0), np.nan)
    return out * math.sqrt(periods_per_year)


# --------------------------------------------------------------------------- report


def _jsonable(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        out = {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, DrawdownPeriod):
            out["recovered"] = value.recovered
        return out
    return value


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """Every metric of one equity curve, with the conventions it was computed under.

    Returns are fractions (0.05 = 5 %); VaR/CVaR are keyed by confidence level.
    """

    # conventions
    annualization: float
    risk_free: float  # annual
    risk_free_per_period: float
    mar: float  # annual minimum acceptable return (downside deviation, Sortino)
    omega_threshold: float  # annual
    var_method: str
    var_levels: tuple[float, ...]
    rolling_window: int
    return_type: str = "simple"
    std_ddof: int = STD_DDOF
    flow_timing: str = "end_of_period"
    var_sign: str = "loss_positive"
    alpha_annualization: str = "geometric"
    mwr_day_count: str = "actual/365"  # with dates; else t / annualization
    # sample
    periods: int = 0  # finite period returns
    start: Label | None = None
    end: Label | None = None
    # returns
    time_weighted_return: float = math.nan
    annualized_return: float = math.nan  # CAGR of the time-weighted return
    money_weighted_return: float = math.nan  # annual (XIRR)
    money_weighted_return_period: float = math.nan  # over the whole span
    best_period: float = math.nan
    worst_period: float = math.nan
    # risk and risk-adjusted
    volatility: float = math.nan
    downside_deviation: float = math.nan
    sharpe: float = math.nan
    sortino: float = math.nan
    calmar: float = math.nan
    omega: float = math.nan
    tail_ratio: float = math.nan
    var: dict[float, float] = field(default_factory=dict)
    cvar: dict[float, float] = field(default_factory=dict)
    # drawdowns
    max_drawdown: float = math.nan
    max_drawdown_period: DrawdownPeriod | None = None
    current_drawdown: float = math.nan
    longest_drawdown: int = 0  # periods
    top_drawdowns: list[DrawdownPeriod] = field(default_factory=list)
    drawdown: FloatArray = field(default_factory=lambda: np.empty(0))
    # benchmark (NaN without one)
    beta: float = math.nan
    correlation: float = math.nan
    alpha: float = math.nan
    # rolling, aligned with the returns
    rolling_sharpe: FloatArray = field(default_factory=lambda: np.empty(0))
    rolling_volatility: FloatArray = field(default_factory=lambda: np.empty(0))
    # optional inputs
    trades: TradeStats | None = None
    exposure: ExposureStats | None = None

    def conventions(self) -> dict[str, Any]:
        """The conventions alone, as a response's ``method`` block."""
        names = (
            "annualization", "risk_free", "risk_free_per_period", "mar", "omega_threshold",
            "var_method", "var_levels", "rolling_window", "return_type", "std_ddof",
            "flow_timing", "var_sign", "alpha_annualization", "mwr_day_count",
        )  # fmt: skip
        return {name: _jsonable(getattr(self, name)) for name in names}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN/inf -> None, arrays -> lists, datetimes -> RFC 3339 UTC."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def performance_report(
    equity: ArrayLike,
    flows: ArrayLike | None = None,
    dates: ArrayLike | Sequence[Any] | None = None,
    *,
    benchmark: ArrayLike | None = None,
    benchmark_dates: ArrayLike | Sequence[Any] | None = None,
    trade_pnls: ArrayLike | Sequence[Any] | None = None,
    position_values: ArrayLike | None = None,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    risk_free: float = 0.0,
    mar: float = 0.0,
    omega_threshold: float = 0.0,
    var_method: VarMethod = "historical",
    var_levels: Sequence[float] = DEFAULT_VAR_LEVELS,
    top_drawdowns: int = 5,
    rolling_window: int = 30,
) -> PerformanceReport:
    """All metrics of an equity curve at once (vectorised, each input converted once).

    ``dates`` label the equity points; ``benchmark`` is a return series aligned with the
    equity's returns (``dates[1:]``) by position, or by date when ``benchmark_dates`` is
    given too. ``position_values`` (periods x assets, aligned with ``equity``) feed the
    exposure figures, ``trade_pnls`` the trade statistics.
    """
    e = _floats(equity).ravel()
    f = None if flows is None else _floats(flows).ravel()
    labels = _labels(dates, e.size, "dates")
    raw = simple_returns(e, f)
    r = raw[np.isfinite(raw)]
    rf_p = periodic_rate(risk_free, periods_per_year)
    levels = tuple(float(x) for x in var_levels)

    dd = drawdown_series(raw) if e.size else np.empty(0)
    firsts, stops, depths = _episodes(dd)
    order = np.argsort(depths, kind="stable")[: max(top_drawdowns, 1)]
    top = [_period(dd, int(firsts[i]), int(stops[i]), labels) for i in order]
    lengths = np.where(stops < dd.size, stops, dd.size - 1) - (firsts - 1)
    mdd = float(dd.min()) if r.size else math.nan

    beta_, corr_, alpha_ = math.nan, math.nan, math.nan
    if benchmark is not None:
        rdates = None if labels is None or benchmark_dates is None else labels[1:]
        rb, bb = align(raw, benchmark, rdates, benchmark_dates)
        beta_, corr_ = _beta(rb, bb), _correlation(rb, bb)
        alpha_ = _alpha(rb, bb, risk_free, periods_per_year)

    expo = None
    if position_values is not None:
        pv = _positions_2d(position_values)
        gross, net = exposure(pv, e)
        last = pv[-1] if pv.shape[0] else np.empty(0)
        w = _weights(last)
        expo = ExposureStats(
            time_in_market=time_in_market(pv),
            gross=float(gross[-1]) if gross.size else math.nan,
            net=float(net[-1]) if net.size else math.nan,
            average_gross=float(np.nanmean(gross)) if np.isfinite(gross).any() else math.nan,
            average_net=float(np.nanmean(net)) if np.isfinite(net).any() else math.nan,
            herfindahl=herfindahl(last),
            effective_holdings=effective_holdings(last),
            largest_weight=float(w.max()) if w.size else math.nan,
        )

    cagr = annualized_return(r, periods_per_year)
    date_labels = labels if labels is not None and labels.dtype.kind == "M" else None
    mwr_growth, mwr_span = _mwr_log_growth(e, f, date_labels, periods_per_year)
    return PerformanceReport(
        annualization=periods_per_year,
        risk_free=risk_free,
        risk_free_per_period=rf_p,
        mar=mar,
        omega_threshold=omega_threshold,
        var_method=var_method,
        var_levels=levels,
        rolling_window=rolling_window,
        periods=int(r.size),
        start=_label(labels, 0) if e.size else None,
        end=_label(labels, e.size - 1) if e.size else None,
        time_weighted_return=cumulative_return(r),
        annualized_return=cagr,
        money_weighted_return=_mwr_rate(mwr_growth, mwr_span, annualize=True),
        money_weighted_return_period=_mwr_rate(mwr_growth, mwr_span, annualize=False),
        best_period=float(r.max()) if r.size else math.nan,
        worst_period=float(r.min()) if r.size else math.nan,
        volatility=volatility(r, periods_per_year),
        downside_deviation=downside_deviation(r, mar, periods_per_year),
        sharpe=sharpe_ratio(r, risk_free, periods_per_year),
        sortino=sortino_ratio(r, mar, periods_per_year),
        calmar=_nan_if_not_finite(cagr / -mdd) if mdd < 0 else math.nan,
        omega=omega_ratio(r, omega_threshold, periods_per_year),
        tail_ratio=tail_ratio(r),
        var={lv: value_at_risk(r, lv, var_method) for lv in levels},
        cvar={lv: conditional_value_at_risk(r, lv, var_method) for lv in levels},
        max_drawdown=mdd,
        max_drawdown_period=top[0] if top else None,
        current_drawdown=float(dd[-1]) if r.size else math.nan,
        longest_drawdown=int(lengths.max()) if lengths.size else 0,
        top_drawdowns=top[:top_drawdowns] if top_drawdowns > 0 else [],
        drawdown=dd,
        beta=beta_,
        correlation=corr_,
        alpha=alpha_,
        rolling_sharpe=rolling_sharpe(raw, rolling_window, risk_free, periods_per_year),
        rolling_volatility=rolling_volatility(raw, rolling_window, periods_per_year),
        trades=None if trade_pnls is None else trade_statistics(trade_pnls),
        exposure=expo,
    )


# --------------------------------------------------------------------------- calendar


def utc_datetimes(dates: ArrayLike | Sequence[Any]) -> NDArray[np.datetime64]:
    """Dates (``datetime`` with or without a time zone, ``date``, ``datetime64``, ISO
    strings) as a ``datetime64[us]`` array in UTC (naive), the form every dated figure uses."""
    arr = np.asarray(dates)
    labels = _labels(arr, arr.size, "dates")
    if labels is None or labels.dtype.kind != "M":
        raise ValueError("dates must be dates or datetimes")
    return labels


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True, eq=False)
class MonthlyReturns:
    """Time-weighted returns per calendar month (UTC): ``values[i, j]`` is the return of
    month ``j + 1`` (January = column 0) of ``years[i]``, NaN where the series has no return
    in that month. ``yearly[i]`` is the return over the part of ``years[i]`` covered.

    A period's return belongs to the month of the date that *ends* it, as empyrical's
    ``aggregate_returns(returns, "monthly")`` on returns dated by their end: so the first
    month covers only the days from the first equity point on.
    """

    years: tuple[int, ...]
    values: FloatArray  # (len(years), 12)
    yearly: FloatArray  # (len(years),)

    def get(self, year: int, month: int) -> float:
        """The return of ``month`` (1..12) of ``year``; NaN outside the series."""
        if year not in self.years or not 1 <= month <= 12:
            return math.nan
        return float(self.values[self.years.index(year), month - 1])


def _compound_by_group(r: FloatArray, keys: NDArray[np.int64]) -> tuple[NDArray[np.int64], FloatArray]:
    """``prod(1 + r) - 1`` of the finite returns of each run of equal, ascending ``keys``;
    NaN for a group without a finite return (a missing return leaves wealth unchanged)."""
    starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
    ok = np.isfinite(r)
    growth = np.multiply.reduceat(np.where(ok, 1.0 + r, 1.0), starts)
    counted = np.add.reduceat(ok.astype(np.int64), starts)
    return keys[starts], np.where(counted > 0, growth - 1.0, np.nan)


def monthly_returns(
    dates: ArrayLike | Sequence[Any], equity: ArrayLike, flows: ArrayLike | None = None
) -> MonthlyReturns:
    """The time-weighted return of each calendar month (UTC), flows removed.

    The period returns are :func:`simple_returns` (a deposit or withdrawal is never a
    return), each dated by the equity point that ends it, compounded within each month:
    ``prod(1 + r_t) - 1``. ``dates`` label the equity points, ascending. With fewer than
    two points there is no return and the table is empty.
    """
    e = _floats(equity).ravel()
    labels = utc_datetimes(dates) if e.size else np.empty(0, dtype="datetime64[us]")
    if labels.size != e.size:
        raise ValueError(f"dates has {labels.size} labels, equity {e.size}")
    if labels.size > 1 and (np.diff(labels) < np.timedelta64(0, "us")).any():
        raise ValueError("dates must be ascending")
    r = simple_returns(e, flows)
    if r.size == 0:
        return MonthlyReturns(years=(), values=np.empty((0, 12)), yearly=np.empty(0))
    months = labels[1:].astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    month_keys, month_returns = _compound_by_group(r, months)
    year_keys, year_returns = _compound_by_group(r, months // 12)
    values = np.full((year_keys.size, 12), np.nan)
    values[np.searchsorted(year_keys, month_keys // 12), month_keys % 12] = month_returns
    return MonthlyReturns(
        years=tuple(int(y) + 1970 for y in year_keys), values=values, yearly=year_returns
    )
