"""The data behind the analytics endpoints: a user's (or one account's) daily equity series,
their fills over a period, and a benchmark's returns — all read, never written.

The series ends today, valued now: stored final days come from ``equity_day``, the days
after each account's last final row are replayed in memory (:class:`EquityRecorder`), so an
answer never waits for the recording job. Several accounts are summed day by day; accounts
valued in another currency than the first account's are left out and named
(``excluded_accounts``) — converting between valuation currencies is not done yet.

Returns over ``[start, end]`` are measured from the close of the day before ``start`` (the
base point), so a period's first day counts. Money stays ``Decimal`` here; the metrics
library gets floats (DESIGN §1.3: floats only in analytics, converted at the boundary).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import NotFound, Unprocessable
from tradepilot.core.money import EXACT
from tradepilot.portfolio.equity import day_start, recorder_of, utc_day
from tradepilot.portfolio.equity_models import EquityDay, EquityIntraday
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

ZERO = Decimal(0)
PERIODS = ("1d", "7d", "30d", "90d", "ytd", "1y", "all")


@dataclass(slots=True)
class EquitySeries:
    """Daily figures, oldest first; ``dates[0]`` is the base point when there is one."""

    currency: str
    accounts: list[uuid.UUID]
    excluded_accounts: list[uuid.UUID]
    dates: list[date] = field(default_factory=list)
    equity: list[Decimal] = field(default_factory=list)
    cash: list[Decimal] = field(default_factory=list)
    positions_value: list[Decimal] = field(default_factory=list)
    net_flows: list[Decimal] = field(default_factory=list)
    fees: list[Decimal] = field(default_factory=list)
    realised_pnl: list[Decimal] = field(default_factory=list)
    trades: list[int] = field(default_factory=list)
    values: list[dict[str, Decimal]] = field(default_factory=list)  # per asset, priced only
    by_account: list[dict[uuid.UUID, Decimal]] = field(default_factory=list)  # equity per account

    def __len__(self) -> int:
        return len(self.dates)

    def floats(self, name: str) -> np.ndarray:
        return np.array([float(v) for v in getattr(self, name)], dtype=float)

    def datetimes(self) -> np.ndarray:
        return np.array(self.dates, dtype="datetime64[D]")

    def since(self, first: date) -> EquitySeries:
        """The part from ``first`` on, with the day before as its base point when held."""
        i = next((k for k, d in enumerate(self.dates) if d >= first), len(self.dates))
        i = max(i - 1, 0)
        out = EquitySeries(self.currency, self.accounts, self.excluded_accounts)
        for name in ("dates", "equity", "cash", "positions_value", "net_flows", "fees", "realised_pnl",
                     "trades", "values", "by_account"):
            setattr(out, name, getattr(self, name)[i:])
        return out


@dataclass(frozen=True, slots=True)
class Window:
    start: date | None
    end: date  # inclusive


def window_for(period: str | None, start: datetime | None, end: datetime | None, today: date) -> Window:
    """``period`` (1d, 7d, 30d, 90d, ytd, 1y, all) or explicit ``start``/``end`` (UTC days)."""
    last = utc_day(end) if end is not None else today
    if start is not None:
        first = utc_day(start)
        if first > last:
            raise Unprocessable("start must not be after end.", code="invalid_period")
        return Window(first, last)
    return Window(period_start(period or "all", last), last)


def period_start(period: str, last: date) -> date | None:
    if period == "all":
        return None
    if period == "ytd":
        return date(last.year, 1, 1)
    if period == "1y":
        return last - timedelta(days=364)
    if period.endswith("d") and period[:-1].isdigit() and period in PERIODS:
        return last - timedelta(days=int(period[:-1]) - 1)
    raise Unprocessable(f"Unknown period {period!r}: use one of {', '.join(PERIODS)}.", code="invalid_period")


class AnalyticsData:
    """Loads what the analytics of one user need."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def accounts(self, session: AsyncSession, user_id: uuid.UUID,
                       account_id: uuid.UUID | None) -> list[TradingAccount]:
        query = select(TradingAccount).where(TradingAccount.user_id == user_id)
        if account_id is not None:
            query = query.where(TradingAccount.id == account_id)
        accounts = list((await session.scalars(query.order_by(TradingAccount.created_at))).all())
        if not accounts:
            raise NotFound("Trading account not found.", code="account_not_found")
        return accounts

    async def series(self, accounts: list[TradingAccount], window: Window) -> EquitySeries:
        main = next((a for a in accounts if a.is_default), accounts[0]).quote_currency
        included = [a for a in accounts if a.quote_currency == main]
        series = EquitySeries(currency=main, accounts=[a.id for a in included],
                              excluded_accounts=[a.id for a in accounts if a.quote_currency != main])
        first = None if window.start is None else window.start - timedelta(days=1)  # the base point
        per_day: dict[date, list[tuple[uuid.UUID, _Row]]] = defaultdict(list)
        recorder = recorder_of(self.runtime)
        # replayed days first: a row the recorder makes final meanwhile is then simply not read
        # (final rows hold the same figures), rather than read as well or missed in between
        replayed_from: dict[uuid.UUID, date] = {}
        for account in included:
            figures_list = await recorder.unfinished_days(account)
            replayed_from[account.id] = figures_list[0].day if figures_list else date.max
            for figures in figures_list:
                if figures.day <= window.end and (first is None or figures.day >= first):
                    per_day[figures.day].append((account.id, _Row.of_figures(figures)))
        async with self.runtime.db.session() as session:
            query = select(EquityDay).where(EquityDay.account_id.in_([a.id for a in included]), EquityDay.final,
                                            EquityDay.day <= window.end)
            if first is not None:
                query = query.where(EquityDay.day >= first)
            for row in (await session.scalars(query)).all():
                if row.day < replayed_from[row.account_id]:
                    per_day[row.day].append((row.account_id, _Row.of_stored(row)))
        for day in sorted(per_day):
            rows = per_day[day]
            series.dates.append(day)
            series.equity.append(_sum(r.equity for _, r in rows))
            series.cash.append(_sum(r.cash for _, r in rows))
            series.positions_value.append(_sum(r.positions_value for _, r in rows))
            series.net_flows.append(_sum(r.net_flows for _, r in rows))
            series.fees.append(_sum(r.fees for _, r in rows))
            series.realised_pnl.append(_sum(r.realised_pnl for _, r in rows))
            series.trades.append(sum(r.trades for _, r in rows))
            values: dict[str, Decimal] = defaultdict(lambda: ZERO)
            for _, r in rows:
                for asset, value in r.values.items():
                    values[asset] = EXACT.add(values[asset], value)
            series.values.append(dict(values))
            series.by_account.append({account_id: r.equity for account_id, r in rows})
        return series

    async def fills(self, accounts: list[TradingAccount], window: Window) -> list[Fill]:
        async with self.runtime.db.session() as session:
            query = select(Fill).where(Fill.account_id.in_([a.id for a in accounts]),
                                       Fill.created_at < day_start(window.end + timedelta(days=1)))
            if window.start is not None:
                query = query.where(Fill.created_at >= day_start(window.start))
            return list((await session.scalars(query.order_by(Fill.created_at))).all())

    async def intraday(self, series: EquitySeries, now: datetime) -> list[tuple[datetime, Decimal, Decimal]]:
        """Today's recorded points and now: (moment, equity, the day's flows so far), summed over
        the series' accounts. A moment counts once every account has a point at or before it
        (each account's latest point is carried forward), so no account is missing from a sum."""
        today = utc_day(now)
        if not series.dates or series.dates[-1] != today:
            return []
        async with self.runtime.db.session() as session:
            rows = (await session.execute(
                select(EquityIntraday.account_id, EquityIntraday.at, EquityIntraday.equity, EquityIntraday.day_flows)
                .where(EquityIntraday.account_id.in_(series.accounts), EquityIntraday.at >= day_start(today),
                       EquityIntraday.at < now)
                .order_by(EquityIntraday.at))).all()
        latest: dict[uuid.UUID, tuple[Decimal, Decimal]] = {}
        points: list[tuple[datetime, Decimal, Decimal]] = []
        expected = {account_id for account_id, *_ in rows}
        for account_id, at, equity, flows in rows:
            latest[account_id] = (equity, flows)
            if set(latest) == expected:
                point = (at, _sum(e for e, _ in latest.values()), _sum(f for _, f in latest.values()))
                if points and points[-1][0] == at:
                    points[-1] = point
                else:
                    points.append(point)
        points.append((now, series.equity[-1], series.net_flows[-1]))
        return points

    async def benchmark_returns(self, symbol: str, dates: list[date]) -> tuple[np.ndarray, np.ndarray]:
        """Daily simple returns of ``symbol``'s closes, labelled by day (for date alignment)."""
        if len(dates) < 2:
            return np.empty(0), np.empty(0, dtype="datetime64[D]")
        closes = await recorder_of(self.runtime).prices.closes(symbol, dates[0], dates[-1])
        if len(closes) < 2:
            raise Unprocessable(f"No daily prices of {symbol} over the period.", code="benchmark_unavailable")
        days = np.array([d for d, _ in closes], dtype="datetime64[D]")
        px = np.array([float(c) for _, c in closes])
        return px[1:] / px[:-1] - 1.0, days[1:]


def trade_pnl(fill: Fill) -> float | None:
    """A closing (sell) fill's realised P&L net of its fee, in the quote currency: one *trade*
    of the statistics (spot: only sells close a position)."""
    if fill.side != "sell" or fill.realised_pnl is None:
        return None
    fee = fill.fee if fill.fee_asset == fill.symbol.split("/")[1] else EXACT.multiply(fill.fee, fill.price)
    return float(EXACT.subtract(fill.realised_pnl, fee))


@dataclass(frozen=True, slots=True)
class _Row:
    equity: Decimal
    cash: Decimal
    positions_value: Decimal
    net_flows: Decimal
    fees: Decimal
    realised_pnl: Decimal
    trades: int
    values: dict[str, Decimal]

    @classmethod
    def of_stored(cls, row: EquityDay) -> _Row:
        return cls(row.equity, row.cash, row.positions_value, row.net_flows, row.fees, row.realised_pnl,
                   row.trades, {a: Decimal(v) for a, v in (row.values or {}).items()})

    @classmethod
    def of_figures(cls, f: object) -> _Row:
        return cls(f.equity, f.cash, f.positions_value, f.net_flows, f.fees, f.realised_pnl,  # type: ignore[attr-defined]
                   f.trades, dict(f.values))  # type: ignore[attr-defined]


def _sum(values: object) -> Decimal:
    total = ZERO
    for v in values:  # type: ignore[attr-defined]
        total = EXACT.add(total, v)
    return total
