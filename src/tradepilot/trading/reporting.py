"""What a user's trading amounted to: the order history, the fills export (CSV) and the P&L.

Money is summed in Python with the exact context, never by SQL (SQLite would do it in floating
point): the fills are read in keyset pages of ``PAGE`` rows, each page in its own short
transaction, so an export of millions of fills neither holds them in memory nor holds a
database lock while a slow client reads.

P&L method: **average cost** (``positions``). Each fill records the gross P&L it realised
(``Fill.realised_pnl``, 0 for a buy) when its position is updated, so the realised P&L of any
period, symbol or UTC day is the sum of its fills' — exactly what the positions show. Fees are
kept apart: net = realised − fees, fees of buys included (they are a cost of the period in
which they were paid). Unrealised P&L is the open positions' now, at the last trade price.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from tradepilot.core.db import Database
from tradepilot.core.errors import Unprocessable
from tradepilot.core.money import EXACT, to_plain_string
from tradepilot.core.pagination import time_keyset_page
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderStatus, Position
from tradepilot.trading.positions import unrealised_pnl

ZERO = Decimal(0)
PAGE = 1000
METHOD = "average_cost"
FEES_TREATMENT = ("realised_pnl is gross: (sell price − average entry) × quantity; fees are not part of the "
                  "average entry nor of realised_pnl, they are reported apart (all fills' fees, buys included) "
                  "and net_pnl = realised_pnl − fees")


# --- time and cursors --------------------------------------------------------------------------

def as_utc(value: datetime | None) -> datetime | None:
    """Query times: an offset is honoured, a naive time is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise Unprocessable("start is after end.", code="invalid_range")


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- history -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HistoryQuery:
    user_id: uuid.UUID
    symbol: str | None = None
    side: str | None = None
    account_id: uuid.UUID | None = None
    status: str | None = None  # one of the final statuses
    start: datetime | None = None  # closed at or after
    end: datetime | None = None  # closed before


async def history(session: AsyncSession, query: HistoryQuery, *, limit: int,
                  cursor: str | None) -> tuple[list[tuple[Order, list[Fill]]], str | None]:
    """Closed orders (filled, canceled, expired, rejected), newest closed first, with their fills."""
    stmt = select(Order).where(Order.user_id == query.user_id, Order.closed_at.is_not(None))
    stmt = stmt.where(Order.status == query.status) if query.status is not None else \
        stmt.where(Order.status.in_(tuple(OrderStatus.FINAL)))
    if query.symbol is not None:
        stmt = stmt.where(Order.symbol == query.symbol)
    if query.side is not None:
        stmt = stmt.where(Order.side == query.side)
    if query.account_id is not None:
        stmt = stmt.where(Order.account_id == query.account_id)
    if query.start is not None:
        stmt = stmt.where(Order.closed_at >= query.start)
    if query.end is not None:
        stmt = stmt.where(Order.closed_at < query.end)
    rows, next_cursor = await time_keyset_page(session, stmt, Order.closed_at, Order.id, limit=limit, cursor=cursor)
    fills: dict[uuid.UUID, list[Fill]] = {row.id: [] for row in rows}
    if rows:
        for fill in await session.scalars(select(Fill).where(Fill.order_id.in_(list(fills)))):
            fills[fill.order_id].append(fill)
    for items in fills.values():
        items.sort(key=_fill_number)
    return [(row, fills[row.id]) for row in rows], next_cursor


def _fill_number(fill: Fill) -> tuple[datetime, int, str]:
    """Trade ids are ``<order id>-<n>``: in the order they happened."""
    number = fill.trade_id.rpartition("-")[2]
    return fill.created_at, int(number) if number.isdigit() else 0, fill.trade_id


# --- fills, page by page -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FillQuery:
    user_id: uuid.UUID
    account_id: uuid.UUID | None = None
    symbol: str | None = None
    start: datetime | None = None  # at or after
    end: datetime | None = None  # before

    def where(self) -> list[ColumnElement[bool]]:
        clauses = [Fill.user_id == self.user_id]
        if self.account_id is not None:
            clauses.append(Fill.account_id == self.account_id)
        if self.symbol is not None:
            clauses.append(Fill.symbol == self.symbol)
        if self.start is not None:
            clauses.append(Fill.created_at >= self.start)
        if self.end is not None:
            clauses.append(Fill.created_at < self.end)
        return clauses


# oldest first; one order's fills of one moment in the order they happened (trade ids are
# "<order id>-<n>": same length, then text, is numeric order); trade ids are unique
_FILL_ORDER = (Fill.created_at, Fill.order_id, func.length(Fill.trade_id), Fill.trade_id)


async def fill_pages(db: Database, query: FillQuery, columns: Sequence[Any], *,
                     joins: Sequence[tuple[Any, Any]] = ()) -> AsyncIterator[list[Any]]:
    """Tuples of ``columns`` of the fills, oldest first, ``PAGE`` at a time; each page read in its
    own short transaction, continuing after the last row (keyset on ``_FILL_ORDER``)."""
    after: tuple[Any, ...] | None = None
    key = len(_FILL_ORDER)
    while True:
        stmt = select(*_FILL_ORDER, *columns).where(*query.where())
        for target, on in joins:
            stmt = stmt.join(target, on)
        if after is not None:
            # the plain bound on created_at lets the (user_id, created_at) index narrow the scan
            stmt = stmt.where(Fill.created_at >= after[0], tuple_(*_FILL_ORDER) > tuple_(*after))
        async with db.session() as session:
            rows = list((await session.execute(stmt.order_by(*_FILL_ORDER).limit(PAGE))).all())
        if not rows:
            return
        yield [tuple(row[key:]) for row in rows]
        if len(rows) < PAGE:
            return
        after = tuple(rows[-1][:key])


# --- the CSV export ------------------------------------------------------------------------------

CSV_COLUMNS = ("time", "account_id", "account_name", "symbol", "side", "quantity", "price", "notional", "fee",
               "fee_asset", "liquidity", "order_id", "client_order_id", "trade_id", "realised_pnl")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """User-chosen text is never read as a formula by a spreadsheet (CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _money(value: Decimal | None) -> str:
    return "" if value is None else to_plain_string(value)


async def fills_csv(db: Database, query: FillQuery) -> AsyncIterator[bytes]:
    """The export, streamed: a header, then one row per fill, oldest first (RFC 4180, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    columns = (Fill, Order.client_order_id, TradingAccount.name)
    joins = ((Order, Order.id == Fill.order_id), (TradingAccount, TradingAccount.id == Fill.account_id))
    yield buffer.getvalue().encode()
    async for rows in fill_pages(db, query, columns, joins=joins):
        buffer.seek(0)
        buffer.truncate()
        for fill, client_order_id, account_name in rows:
            writer.writerow((
                rfc3339(fill.created_at), str(fill.account_id), _text(account_name), fill.symbol, fill.side,
                _money(fill.quantity), _money(fill.price), _money(fill.quote_quantity), _money(fill.fee),
                fill.fee_asset, fill.liquidity, str(fill.order_id), _text(client_order_id), fill.trade_id,
                _money(fill.realised_pnl)))
        yield buffer.getvalue().encode()


# --- P&L -----------------------------------------------------------------------------------------

def quote_of(symbol: str) -> str:
    return symbol.partition("/")[2]


@dataclass(slots=True)
class Figures:
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0

    def add(self, realised: Decimal | None, fee: Decimal | None) -> None:
        if realised is not None:
            self.realised = EXACT.add(self.realised, realised)
        if fee is not None:
            self.fees = EXACT.add(self.fees, fee)
        self.fills += 1

    def out(self, quote: str) -> dict[str, Any]:
        return {"quote_asset": quote, "realised_pnl": self.realised, "fees": self.fees,
                "net_pnl": EXACT.subtract(self.realised, self.fees), "fills": self.fills}


@dataclass(slots=True)
class Holding:
    quantity: Decimal = ZERO
    unrealised: Decimal | None = ZERO
    mark: Decimal | None = None


@dataclass(slots=True)
class PnlReport:
    by_symbol: dict[str, Figures] = field(default_factory=dict)
    by_day: dict[tuple[date, str], Figures] = field(default_factory=dict)
    holdings: dict[str, Holding] = field(default_factory=dict)
    other_fees: dict[str, Decimal] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        symbols = sorted(set(self.by_symbol) | set(self.holdings))
        by_symbol = []
        totals: dict[str, tuple[Figures, Decimal | None]] = {}
        for symbol in symbols:
            quote = quote_of(symbol)
            figures = self.by_symbol.get(symbol, Figures())
            holding = self.holdings.get(symbol, Holding())
            by_symbol.append({**figures.out(quote), "symbol": symbol, "quantity": holding.quantity,
                              "mark_price": holding.mark, "unrealised_pnl": holding.unrealised})
            total, unrealised = totals.get(quote, (Figures(), ZERO))
            total.realised = EXACT.add(total.realised, figures.realised)
            total.fees = EXACT.add(total.fees, figures.fees)
            total.fills += figures.fills
            unrealised = None if unrealised is None or holding.unrealised is None else \
                EXACT.add(unrealised, holding.unrealised)
            totals[quote] = (total, unrealised)
        return {
            "totals": [{**t.out(q), "unrealised_pnl": u} for q, (t, u) in sorted(totals.items())],
            "by_symbol": by_symbol,
            "by_day": [{**f.out(q), "date": d} for (d, q), f in sorted(self.by_day.items())],
            "fees_in_other_assets": dict(sorted(self.other_fees.items())),
        }


async def pnl(db: Database, session: AsyncSession, query: FillQuery,
              mark: Any) -> PnlReport:
    """Realised P&L and fees of the fills in the query, by symbol and UTC day; unrealised now.

    ``mark(symbol)`` is the last trade price (or None)."""
    report = PnlReport()
    columns = (Fill.created_at, Fill.symbol, Fill.realised_pnl, Fill.fee, Fill.fee_asset)
    async for rows in fill_pages(db, query, columns):
        for created_at, symbol, realised, fee, fee_asset in rows:
            quote = quote_of(symbol)
            in_quote = fee if fee_asset == quote else None
            if in_quote is None and fee:
                report.other_fees[fee_asset] = EXACT.add(report.other_fees.get(fee_asset, ZERO), fee)
            report.by_symbol.setdefault(symbol, Figures()).add(realised, in_quote)
            report.by_day.setdefault((created_at.astimezone(UTC).date(), quote), Figures()).add(realised, in_quote)
    positions = select(Position).where(Position.user_id == query.user_id, Position.opened_at.is_not(None))
    if query.account_id is not None:
        positions = positions.where(Position.account_id == query.account_id)
    if query.symbol is not None:
        positions = positions.where(Position.symbol == query.symbol)
    for position in await session.scalars(positions):
        if position.quantity == 0:
            continue
        holding = report.holdings.setdefault(position.symbol, Holding(mark=mark(position.symbol)))
        holding.quantity = EXACT.add(holding.quantity, position.quantity)
        value = unrealised_pnl(position, holding.mark)
        holding.unrealised = None if value is None or holding.unrealised is None else \
            EXACT.add(holding.unrealised, value)
    return report


async def user_accounts(session: AsyncSession, user_id: uuid.UUID) -> list[uuid.UUID]:
    return list(await session.scalars(select(TradingAccount.id).where(TradingAccount.user_id == user_id)
                                      .order_by(TradingAccount.created_at)))
