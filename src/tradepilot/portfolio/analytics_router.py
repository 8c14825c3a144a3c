"""``/api/analytics/*``: performance, risk, drawdown, Sharpe, allocation and exposure.

Every figure comes from ``portfolio/metrics.py`` over the daily equity series of
``portfolio/analytics.py``; every response carries a ``method`` block saying how it was
computed (annualisation, risk-free rate, VaR method, flow timing …). Money is a decimal
string; ratios and returns are JSON numbers (fractions: 0.05 = 5 %), ``null`` when a figure
is undefined (too few days, no losing trade …). Parameters shared by all: ``account_id``
(default: all your accounts), ``period`` or ``start``/``end``, ``benchmark`` (a symbol such
as ``BTC/USDT``: beta, correlation and alpha against its daily returns).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, Query, Response
from sqlalchemy import select

from tradepilot.core.deps import DbSession, RuntimeDep
from tradepilot.core.errors import Unprocessable
from tradepilot.core.money import EXACT, to_plain_string
from tradepilot.core.routing import api_router
from tradepilot.portfolio import metrics
from tradepilot.portfolio.analytics import (
    PERIODS,
    AnalyticsData,
    EquitySeries,
    Window,
    period_start,
    trade_pnl,
    window_for,
)
from tradepilot.portfolio.equity import utc_day
from tradepilot.portfolio.manager import manager_of
from tradepilot.portfolio.report import MEDIA_TYPES, ReportFormat, render
from tradepilot.trading.deps import ReadUser
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order

router = api_router(prefix="/api/analytics", tags=["analytics"])

ZERO = Decimal(0)
Period = Literal["1d", "7d", "30d", "90d", "ytd", "1y", "all"]
MANUAL = "manual"  # orders placed by hand or through the API; a live run's are grouped by strategy id
_NOT_FOUND = {404: {"description": "No such account, or not yours (account_not_found)"}}


@dataclass(frozen=True, slots=True)
class Scope:
    accounts: list[TradingAccount]
    window: Window
    benchmark: str | None
    now: datetime
    label: str  # the period as asked: "30d", "2026-01-01 – 2026-03-31", "all"


async def analytics_scope(
    principal: ReadUser,
    db: DbSession,
    runtime: RuntimeDep,
    account_id: Annotated[uuid.UUID | None, Query(description="One account; default: all your accounts")] = None,
    period: Annotated[Period | None, Query(description="1d, 7d, 30d, 90d, ytd, 1y or all (default)")] = None,
    start: Annotated[datetime | None, Query(description="First UTC day (instead of period)")] = None,
    end: Annotated[datetime | None, Query(description="Last UTC day (default today)")] = None,
    benchmark: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{1,16}/[A-Z0-9]{1,16}$",
                                           description="A symbol whose daily returns are the benchmark")] = None,
) -> Scope:
    accounts = await AnalyticsData(runtime).accounts(db, principal.id, account_id)
    market = runtime.services.get("market")
    if benchmark is not None and market is not None and benchmark not in {i.symbol for i in market.instruments()}:
        raise Unprocessable(f"Unknown benchmark symbol {benchmark!r}.", code="unknown_benchmark")
    await db.commit()  # nothing written: end the read transaction before the (longer) analysis
    now = runtime.clock.now()
    window = window_for(period, start, end, utc_day(now))
    label = period or ("all" if window.start is None and end is None else
                       f"{window.start.isoformat() if window.start else 'start'} – {window.end.isoformat()}")
    return Scope(accounts=accounts, window=window, benchmark=benchmark, now=now, label=label)


ScopeDep = Annotated[Scope, Depends(analytics_scope)]


# --- helpers ----------------------------------------------------------------------------------

def out(value: Any) -> Any:
    """JSON-ready: Decimal → string, NaN/inf → null, dates → ISO, arrays → lists."""
    if isinstance(value, Decimal):
        return to_plain_string(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [out(v) for v in value.tolist()]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat() if value.time() == datetime.min.time() \
            else value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): out(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [out(v) for v in value]
    return value


def _header(scope: Scope, series: EquitySeries) -> dict[str, Any]:
    return {
        "currency": series.currency,
        "accounts": series.accounts,
        "excluded_accounts": series.excluded_accounts,
        "start": series.dates[0] if series.dates else scope.window.start,
        "end": series.dates[-1] if series.dates else scope.window.end,
        "days": max(len(series) - 1, 0),
        "as_of": scope.now,
    }


async def _load(runtime: Any, scope: Scope) -> EquitySeries:
    return await AnalyticsData(runtime).series(scope.accounts, scope.window)


async def _report(runtime: Any, scope: Scope, series: EquitySeries, *, var_method: str = "historical",
                  risk_free: float = 0.0, rolling_window: int = 30,
                  trade_pnls: list[float] | None = None) -> metrics.PerformanceReport:
    bench, bench_dates = None, None
    if scope.benchmark is not None:
        bench, bench_dates = await AnalyticsData(runtime).benchmark_returns(scope.benchmark, series.dates)
    return metrics.performance_report(
        series.floats("equity"), series.floats("net_flows"), series.datetimes(),
        benchmark=bench, benchmark_dates=bench_dates, trade_pnls=trade_pnls,
        position_values=_position_matrix(series), var_method=var_method,  # type: ignore[arg-type]
        risk_free=risk_free, rolling_window=rolling_window)


def _position_matrix(series: EquitySeries) -> np.ndarray:
    assets = sorted({a for day in series.values for a in day} - {series.currency})
    matrix = np.zeros((len(series), len(assets)))
    for i, day in enumerate(series.values):
        for j, asset in enumerate(assets):
            matrix[i, j] = float(day.get(asset, ZERO))
    return matrix


def _method(report: metrics.PerformanceReport) -> dict[str, Any]:
    return {**report.conventions(), "returns": "time-weighted; deposits and withdrawals are flows at the end "
            "of their day, never returns", "base_point": "the close of the day before start",
            "day": "UTC", "valuation": "daily closes (1d candles), today at the last price"}


async def _strategies_of_orders(runtime: Any, accounts: list[TradingAccount]) -> dict[uuid.UUID, str]:
    """Order id → the id of the strategy whose live run placed it (strategies/runs); others are manual."""
    async with runtime.db.read() as session:
        rows = await session.execute(select(Order.id, Order.strategy_id).where(
            Order.account_id.in_([a.id for a in accounts]), Order.strategy_id.is_not(None)))
        return {order_id: str(strategy_id) for order_id, strategy_id in rows}


def _breakdown(fills: list[Fill], key: Any) -> list[dict[str, Any]]:
    groups: dict[str, list[Fill]] = defaultdict(list)
    for fill in fills:
        groups[key(fill)].append(fill)
    rows = []
    for name, group in sorted(groups.items()):
        pnls = [p for p in (trade_pnl(f) for f in group) if p is not None]
        stats = metrics.trade_statistics(pnls) if pnls else None
        realised = ZERO
        fees = ZERO
        volume = ZERO
        for f in group:
            realised = EXACT.add(realised, f.realised_pnl or ZERO)
            fees = EXACT.add(fees, f.fee if f.fee_asset == f.symbol.split("/")[1]
                             else EXACT.multiply(f.fee, f.price))
            volume = EXACT.add(volume, f.quote_quantity)
        rows.append({"name": name, "fills": len(group), "closing_trades": len(pnls), "volume": volume,
                     "realised_pnl": realised, "fees": fees,
                     "win_rate": None if stats is None else stats.win_rate,
                     "profit_factor": None if stats is None else stats.profit_factor,
                     "expectancy": None if stats is None else stats.expectancy})
    return rows


def _intraday_return(series: EquitySeries, points: list[tuple[datetime, Decimal, Decimal]]) -> float | None:
    """Today's time-weighted return through its intraday points, from yesterday's close."""
    if len(series) < 2 or not points:
        return None
    wealth, previous, flows_before = 1.0, float(series.equity[-2]), 0.0
    for _, equity, day_flows in points:
        if previous <= 0:
            return None
        wealth *= (float(equity) - (float(day_flows) - flows_before)) / previous
        previous, flows_before = float(equity), float(day_flows)
    return wealth - 1.0


def _twr(series: EquitySeries) -> float | None:
    if len(series) < 2:
        return None
    return out(metrics.time_weighted_return(series.floats("equity"), series.floats("net_flows")))


# --- endpoints ----------------------------------------------------------------------------------

@router.get("/performance", summary="Returns by period, equity curve, best/worst day, trade statistics",
            responses=_NOT_FOUND)
async def performance(scope: ScopeDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Time-weighted returns over 1d/7d/30d/90d/YTD/1y/all and over the requested window, the
    money-weighted return (XIRR), the equity curve with its flows, best and worst day, profit
    and loss, and closed-trade statistics (win rate, profit factor, average win/loss,
    expectancy) per symbol and per strategy."""
    everything = await AnalyticsData(runtime).series(scope.accounts, Window(None, scope.window.end))
    series = everything if scope.window.start is None else everything.since(scope.window.start)
    fills = await AnalyticsData(runtime).fills(scope.accounts, scope.window)
    pnls = [p for p in (trade_pnl(f) for f in fills) if p is not None]
    strategy_of = await _strategies_of_orders(runtime, scope.accounts)
    report = await _report(runtime, scope, series, trade_pnls=pnls)
    returns: dict[str, Any] = {}
    for name in PERIODS:
        first = period_start(name, scope.window.end)
        returns[name] = _twr(everything if first is None else everything.since(first))
    r = metrics.simple_returns(series.floats("equity"), series.floats("net_flows"))
    days = series.dates
    best = int(np.nanargmax(r)) if np.isfinite(r).any() else None
    worst = int(np.nanargmin(r)) if np.isfinite(r).any() else None
    flows = sum(series.net_flows[1:], ZERO) if len(series) > 1 else ZERO
    change = EXACT.subtract(series.equity[-1], series.equity[0]) if series.dates else ZERO
    trades = report.trades
    intraday = await AnalyticsData(runtime).intraday(series, scope.now) if scope.window.end == utc_day(scope.now) \
        else []
    return out({
        **_header(scope, series),
        "method": _method(report),
        "returns": returns,
        "period_return": report.time_weighted_return,
        "annualized_return": report.annualized_return,
        "money_weighted_return": report.money_weighted_return,
        "money_weighted_return_period": report.money_weighted_return_period,
        "best_day": None if best is None else {"date": days[best + 1], "return": float(r[best])},
        "worst_day": None if worst is None else {"date": days[worst + 1], "return": float(r[worst])},
        "profit": {"equity_start": series.equity[0] if series.dates else None,
                   "equity_end": series.equity[-1] if series.dates else None,
                   "net_flows": flows, "profit": EXACT.subtract(change, flows),
                   "realised_pnl": sum(series.realised_pnl[1:], ZERO), "fees": sum(series.fees[1:], ZERO)},
        "trades": None if trades is None else {
            "count": trades.count, "wins": trades.wins, "losses": trades.losses, "win_rate": trades.win_rate,
            "profit_factor": trades.profit_factor, "average_win": trades.average_win,
            "average_loss": trades.average_loss, "expectancy": trades.expectancy,
            "payoff_ratio": trades.payoff_ratio, "best": trades.best, "worst": trades.worst,
            "definition": "a sell fill's realised P&L (average cost) net of its fee"},
        "by_symbol": _breakdown(fills, lambda f: f.symbol),
        "by_strategy": _breakdown(fills, lambda f: strategy_of.get(f.order_id, MANUAL)),
        "intraday_return": _intraday_return(series, intraday),
        "intraday_curve": [{"at": at, "equity": e, "day_flows": f} for at, e, f in intraday],
        "equity_curve": [{"date": d, "equity": e, "net_flows": f, "cash": c, "positions_value": p}
                         for d, e, f, c, p in zip(series.dates, series.equity, series.net_flows, series.cash,
                                                  series.positions_value, strict=True)],
    })


VarMethod = Literal["historical", "parametric"]


@router.get("/risk-metrics", summary="Volatility, Sharpe, Sortino, Calmar, Omega, VaR/CVaR, beta",
            responses=_NOT_FOUND)
async def risk_metrics(
    scope: ScopeDep, runtime: RuntimeDep,
    var_method: Annotated[VarMethod, Query(description="historical (empirical quantile) or parametric (normal)")]
    = "historical",
    risk_free: Annotated[float, Query(ge=-1, le=1, description="Annual risk-free rate, a fraction")] = 0.0,
) -> dict[str, Any]:
    series = await _load(runtime, scope)
    report = await _report(runtime, scope, series, var_method=var_method, risk_free=risk_free)
    other = "parametric" if var_method == "historical" else "historical"
    r = metrics.simple_returns(series.floats("equity"), series.floats("net_flows"))
    r = r[np.isfinite(r)]
    return out({
        **_header(scope, series),
        "method": _method(report),
        "volatility": report.volatility, "downside_deviation": report.downside_deviation,
        "sharpe": report.sharpe, "sortino": report.sortino, "calmar": report.calmar, "omega": report.omega,
        "tail_ratio": report.tail_ratio, "max_drawdown": report.max_drawdown,
        "var": {str(k): v for k, v in report.var.items()}, "cvar": {str(k): v for k, v in report.cvar.items()},
        other + "_var": {str(lv): metrics.value_at_risk(r, lv, other) for lv in report.var_levels},  # type: ignore[arg-type]
        other + "_cvar": {str(lv): metrics.conditional_value_at_risk(r, lv, other)  # type: ignore[arg-type]
                          for lv in report.var_levels},
        "benchmark": None if scope.benchmark is None else {
            "symbol": scope.benchmark, "beta": report.beta, "correlation": report.correlation,
            "alpha": report.alpha},
    })


@router.get("/drawdown", summary="Current and maximum drawdown, durations, series and top-5 periods",
            responses=_NOT_FOUND)
async def drawdown(scope: ScopeDep, runtime: RuntimeDep) -> dict[str, Any]:
    series = await _load(runtime, scope)
    report = await _report(runtime, scope, series)
    periods = report.as_dict()
    return out({
        **_header(scope, series),
        "method": {**_method(report), "drawdown": "on the time-weighted wealth index: flows do not "
                   "cause drawdowns; durations in days"},
        "current": report.current_drawdown, "max": report.max_drawdown,
        "max_period": periods["max_drawdown_period"],
        "longest_duration_days": report.longest_drawdown,
        "top_periods": periods["top_drawdowns"],
        "series": [{"date": d, "drawdown": v} for d, v in zip(series.dates[1:], report.drawdown.tolist(),
                                                              strict=False)],
    })


@router.get("/sharpe-ratio", summary="Sharpe ratio with its conventions and rolling series", responses=_NOT_FOUND)
async def sharpe_ratio(
    scope: ScopeDep, runtime: RuntimeDep,
    risk_free: Annotated[float, Query(ge=-1, le=1, description="Annual risk-free rate, a fraction")] = 0.0,
    window: Annotated[int, Query(ge=2, le=3650, description="Rolling window in days")] = 30,
) -> dict[str, Any]:
    series = await _load(runtime, scope)
    report = await _report(runtime, scope, series, risk_free=risk_free, rolling_window=window)
    return out({
        **_header(scope, series),
        "method": {**_method(report), "formula": "mean(r - rf_daily) / std(r, ddof=1) * sqrt(annualization)"},
        "sharpe": report.sharpe, "annualized_return": report.annualized_return, "volatility": report.volatility,
        "risk_free": risk_free, "annualization": report.annualization, "rolling_window": window,
        "rolling": [{"date": d, "sharpe": s} for d, s in zip(series.dates[1:], report.rolling_sharpe.tolist(),
                                                             strict=False)],
    })


def _weights(values: dict[Any, Decimal]) -> dict[Any, float | None]:
    total = sum((v for v in values.values()), ZERO)
    return {k: (float(EXACT.divide(v, total)) if total else None) for k, v in values.items()}


@router.get("/portfolio-allocation", summary="Allocation by asset, account and strategy, now and over time",
            responses=_NOT_FOUND)
async def portfolio_allocation(scope: ScopeDep, runtime: RuntimeDep) -> dict[str, Any]:
    series = await _load(runtime, scope)
    now_values = series.values[-1] if series.dates else {}
    by_account = series.by_account[-1] if series.dates else {}
    names = {a.id: a.name for a in scope.accounts}
    asset_weights = _weights(now_values)
    account_weights = _weights(by_account)
    return out({
        **_header(scope, series),
        "method": {"weights": "value / total valued equity; assets no price values are left out",
                   "valuation": "daily closes (1d candles), today at the last price"},
        "by_asset": [{"asset": a, "value": v, "weight": asset_weights[a]}
                     for a, v in sorted(now_values.items(), key=lambda kv: -kv[1])],
        "by_account": [{"account_id": k, "name": names.get(k), "value": v, "weight": account_weights[k]}
                       for k, v in sorted(by_account.items(), key=lambda kv: -kv[1])],
        "by_strategy": [{"strategy": MANUAL, "value": sum(now_values.values(), ZERO),
                         "weight": 1.0 if now_values else None}],
        "over_time": [{"date": d, "weights": _weights(v)} for d, v in zip(series.dates, series.values, strict=True)],
    })


@router.get("/exposure", summary="Gross and net exposure, per asset and account, concentration",
            responses=_NOT_FOUND)
async def exposure(scope: ScopeDep, runtime: RuntimeDep) -> dict[str, Any]:
    series = await _load(runtime, scope)
    report = await _report(runtime, scope, series)
    equity = series.equity[-1] if series.dates else ZERO
    values = {a: v for a, v in (series.values[-1] if series.dates else {}).items() if a != series.currency}
    per_asset = [{"asset": a, "value": v, "weight": float(EXACT.divide(v, equity)) if equity else None}
                 for a, v in sorted(values.items(), key=lambda kv: -abs(kv[1]))]
    gross = sum((abs(v) for v in values.values()), ZERO)
    net = sum(values.values(), ZERO)
    expo = report.exposure
    return out({
        **_header(scope, series),
        "method": {"exposure": "position value / equity; spot accounts hold no shorts, so gross == net",
                   "herfindahl": "sum of squared weights of the positions (cash excluded)"},
        "equity": equity, "gross": gross, "net": net,
        "gross_ratio": float(EXACT.divide(gross, equity)) if equity else None,
        "net_ratio": float(EXACT.divide(net, equity)) if equity else None,
        "per_asset": per_asset,
        "per_account": [{"account_id": k, "equity": v} for k, v in (series.by_account[-1] if series.dates
                                                                     else {}).items()],
        "largest_weight": None if expo is None else expo.largest_weight,
        "herfindahl": None if expo is None else expo.herfindahl,
        "effective_holdings": None if expo is None else expo.effective_holdings,
        "time_in_market": None if expo is None else expo.time_in_market,
        "average_gross": None if expo is None else expo.average_gross,
    })


@router.get("/report", summary="Performance report with charts: self-contained HTML, PDF or PNG",
            response_class=Response,
            responses={**_NOT_FOUND, 200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                                           "description": "The report"},
                       422: {"description": "Fewer than two days of history (insufficient_history)"}})
async def report(
    scope: ScopeDep, runtime: RuntimeDep,
    format: Annotated[ReportFormat, Query(description="html (default, charts inline), pdf or png")] = "html",
) -> Response:
    """Equity curve with deposits and withdrawals marked, underwater drawdown, monthly-returns
    heat map, allocation, and every metric with its definition and conventions."""
    data = await manager_of(runtime).report_input(scope.accounts, scope.window, scope.label,
                                                  benchmark=scope.benchmark)
    body, media_type = await asyncio.to_thread(render, data, format)
    filename = f"tradepilot-report-{scope.window.end.isoformat()}.{format}"
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'inline; filename="{filename}"'})
