"""``PortfolioManager``: the plan's portfolio use cases in one place, for code that is not an
HTTP route — the notifications issue e-mails reports with it, strategies and the AI risk
assessment read values and risk from it. Routes call the same functions.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from tradepilot.core.money import EXACT
from tradepilot.identity.principal import AuthUser
from tradepilot.portfolio import metrics
from tradepilot.portfolio.analytics import (
    AnalyticsData,
    EquitySeries,
    Window,
    trade_pnl,
    window_for,
)
from tradepilot.portfolio.equity import utc_day
from tradepilot.portfolio.optimize import RISK_TOLERANCE_METHODS, RiskTolerance
from tradepilot.portfolio.optimize_service import OptimizedAllocation, optimize_allocation
from tradepilot.portfolio.rebalance_service import RebalanceResult, RebalanceService
from tradepilot.portfolio.report import ReportFormat, render
from tradepilot.portfolio.report_input import ReportInput
from tradepilot.trading.models import TradingAccount

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

ZERO = Decimal(0)


class PortfolioManager:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.data = AnalyticsData(runtime)

    async def _accounts(self, user_id: uuid.UUID, account_id: uuid.UUID | None) -> list[TradingAccount]:
        async with self.runtime.db.session() as session:
            return await self.data.accounts(session, user_id, account_id)

    def _window(self, period: str | None, start: datetime | None = None, end: datetime | None = None) -> Window:
        return window_for(period, start, end, utc_day(self.runtime.clock.now()))

    async def series(self, user_id: uuid.UUID, account_id: uuid.UUID | None = None,
                     period: str | None = None) -> EquitySeries:
        return await self.data.series(await self._accounts(user_id, account_id), self._window(period))

    async def calculate_portfolio_value(self, user_id: uuid.UUID, account_id: uuid.UUID | None = None) -> Decimal:
        """Equity now: cash plus every priced holding at the last price."""
        series = await self.series(user_id, account_id, "1d")
        return series.equity[-1] if series.dates else ZERO

    async def get_asset_allocation(self, user_id: uuid.UUID, account_id: uuid.UUID | None = None
                                   ) -> dict[str, tuple[Decimal, Decimal]]:
        """Asset -> (value, weight of the valued total) now."""
        series = await self.series(user_id, account_id, "1d")
        values = series.values[-1] if series.dates else {}
        total = sum(values.values(), ZERO)
        return {a: (v, EXACT.divide(v, total) if total else ZERO) for a, v in values.items()}

    async def calculate_risk_metrics(self, user_id: uuid.UUID, account_id: uuid.UUID | None = None,
                                     period: str | None = None, **options: object) -> metrics.PerformanceReport:
        """Every metric of the equity series over ``period`` (``options``: performance_report's)."""
        series = await self.series(user_id, account_id, period)
        return metrics.performance_report(series.floats("equity"), series.floats("net_flows"), series.datetimes(),
                                          **options)  # type: ignore[arg-type]

    async def rebalance_portfolio(self, principal: AuthUser, target_allocation: dict[str, Decimal], *,
                                  tolerance: Decimal = Decimal("0.01"), dry_run: bool = True,
                                  account_id: uuid.UUID | None = None) -> RebalanceResult:
        """The orders that bring an account to ``target_allocation`` (asset -> weight, cash
        included); placed through the trading service only when ``dry_run`` is false."""
        rebalancer = RebalanceService(self.runtime.services["orders"], self.runtime.services["market"],
                                      self.runtime.services["trading"])
        async with self.runtime.db.transaction() as session:
            return await rebalancer.rebalance(session, principal, account_id=account_id, target=target_allocation,
                                              tolerance=tolerance, dry_run=dry_run)

    async def optimize_allocation(self, user_id: uuid.UUID, risk_tolerance: RiskTolerance = RiskTolerance.MODERATE, *,
                                  symbols: list[str] | None = None, lookback_days: int = 365,
                                  account_id: uuid.UUID | None = None) -> OptimizedAllocation:
        """Weights for ``symbols`` (default: the ``<asset>/<quote>`` markets of what the user
        holds) by the method ``risk_tolerance`` maps to (see optimize.RISK_TOLERANCE_METHODS)."""
        if symbols is None:
            series = await self.series(user_id, account_id, "1d")
            held = series.values[-1] if series.dates else {}
            symbols = [f"{asset}/{series.currency}" for asset in sorted(held) if asset != series.currency]
        return await optimize_allocation(
            self.runtime.services["market"], self.runtime.clock, symbols=symbols,
            method=RISK_TOLERANCE_METHODS[risk_tolerance], lookback_days=lookback_days, bounds=None,
            default_bounds=(0.0, 1.0), target_return=None, risk_free_rate=0.0)

    async def report_input(self, accounts: list[TradingAccount], window: Window, label: str, *,
                           benchmark: str | None = None) -> ReportInput:
        series = await self.data.series(accounts, window)
        fills = await self.data.fills(accounts, window)
        bench, bench_dates = None, None
        if benchmark is not None:
            bench, bench_dates = await self.data.benchmark_returns(benchmark, series.dates)
        last = series.values[-1] if series.dates else {}
        total = sum(last.values(), ZERO)
        names = [a.name for a in accounts if a.id in series.accounts]
        return ReportInput.from_equity(
            title="TradePilot performance report", account_label=", ".join(names) or "-",
            period_label=label, generated_at=self.runtime.clock.now(), currency=series.currency,
            dates=series.datetimes(), equity=series.floats("equity"), flows=series.floats("net_flows"),
            allocation={a: (float(v), float(v / total) if total else 0.0) for a, v in last.items()},
            trade_pnls=[p for p in (trade_pnl(f) for f in fills) if p is not None],
            benchmark=bench, benchmark_dates=bench_dates)

    async def generate_performance_report(self, user_id: uuid.UUID, period: str = "30d", fmt: ReportFormat = "html",
                                          account_id: uuid.UUID | None = None) -> tuple[bytes, str]:
        """The report as (bytes, media type); rendering runs in a thread (CPU-bound)."""
        data = await self.report_input(await self._accounts(user_id, account_id), self._window(period), period)
        return await asyncio.to_thread(render, data, fmt)


def manager_of(runtime: Runtime) -> PortfolioManager:
    manager = runtime.services.get("portfolio")
    if manager is None:
        manager = runtime.services["portfolio"] = PortfolioManager(runtime)
    return manager
