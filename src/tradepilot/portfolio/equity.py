"""Keeping the equity history (``equity_day``, ``equity_intraday``) up to date.

Who writes it:

* the ``portfolio.equity_record`` job, every 5 minutes (the core's scheduler, once across
  replicas): every account's days since its last final row are replayed, yesterday's row
  becomes final, today's is rewritten and an intraday point added; accounts that never had
  a row are back-filled from their first ledger transaction the same way;
* after fills: processes that run jobs listen to ``user.*.fills`` and record the account a
  moment later (debounced: a burst of fills is one recording).

Readers never depend on the job having run: :meth:`EquityRecorder.unfinished_days` replays
the days after the last final row in memory, so analytics always end at *now*.

Writes are upserts of values computed from the ledger, so two processes recording the same
account at once write the same figures; there is nothing to lock.

Prices: each day's close of ``<asset>/<currency>`` from the candle store (1d bars), carried
forward over days without one; where the store has none, the last fill price of that day
(and the previous row's own prices) stand in; today uses the market's last prices (a
``tradepilot worker``, which runs no market, values today at the latest close; readers on
the web replicas replay today at live prices anyway).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.events import Event, Topics
from tradepilot.core.money import EXACT
from tradepilot.jobs.registry import JobContext, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.portfolio.equity_models import EquityDay, EquityIntraday
from tradepilot.portfolio.equity_replay import DailyCloses, DayFigures, FillMove, LedgerMove, replay
from tradepilot.trading.execution import FILLS_KIND
from tradepilot.trading.models import (
    AccountStatus,
    Bucket,
    LedgerPosting,
    LedgerTransaction,
    TradingAccount,
)
from tradepilot.trading.order_models import Fill

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.portfolio.equity")

RECORD_JOB = "portfolio.equity_record"
RECORD_SCHEDULE = schedule(RECORD_JOB, "*/5 * * * *", RECORD_JOB)
INTRADAY_RETENTION = timedelta(days=3)
FILL_DEBOUNCE_SECONDS = 5.0  # an account trading all day is re-recorded at most every 5 s
PRICE_LOOKBACK = timedelta(days=7)  # closes before the first replayed day, to carry forward
# A fill's time is read before its account's lock is taken, so one may commit after a later-
# stamped one: incremental reads look this far back (and skip the fills they already have).
FILL_SKEW = timedelta(minutes=1)
LOADED_ACCOUNTS = 2000  # accounts whose ledger reads a process keeps (least recently used dropped)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class _Start:
    """Where a replay begins: the last final row's state, or the account's opening."""

    holdings: dict[str, Decimal]
    ledger_seq: int
    first_day: date
    seed_prices: dict[str, Decimal]  # asset -> unit price the last final row was valued at
    seed_day: date | None


@dataclass(slots=True)
class _Loaded:
    """What this process has read of one account since its last final row, so that the next
    recording reads only what is new. Ledger transactions are numbered in commit order under
    the account's lock (``seq``), so "after the last seq read" is exact; fills are read again
    over ``FILL_SKEW`` and deduplicated by id. Held-bucket postings are kept summed per day,
    asset and bucket (exact additions: the replay adds them anyway), so memory and replay
    time grow with the assets and days, not with the number of orders."""

    start: _Start
    last_seq: int
    held: dict[tuple[date, str, str], LedgerMove] = field(default_factory=dict)
    flows: list[LedgerMove] = field(default_factory=list)  # external and fee postings, one by one
    fills: list[_FillRow] = field(default_factory=list)  # oldest first
    recent_fills: dict[uuid.UUID, datetime] = field(default_factory=dict)  # ids within FILL_SKEW of the newest

    def add_moves(self, rows: Iterable[Any]) -> None:
        floor = self.last_seq  # rows another reader added meanwhile are skipped (no await in here)
        for seq, at, asset, bucket, amount in rows:
            if seq <= floor:
                continue
            self.last_seq = max(self.last_seq, seq)
            day = utc_day(at)
            if bucket in Bucket.HELD:
                had = self.held.get((day, asset, bucket))  # rows come in seq order: this seq is the newest
                total = amount if had is None else EXACT.add(had.amount, amount)
                self.held[(day, asset, bucket)] = LedgerMove(seq=seq, day=day, asset=asset, bucket=bucket,
                                                             amount=total)
            else:
                self.flows.append(LedgerMove(seq=seq, day=day, asset=asset, bucket=bucket, amount=amount))

    def add_fills(self, rows: Iterable[Any]) -> None:
        for fill_id, at, symbol, price, pnl in rows:
            if fill_id in self.recent_fills:
                continue
            self.recent_fills[fill_id] = at
            row = _FillRow(utc_day(at), symbol, price, pnl, at)
            if self.fills and at < self.fills[-1].at:
                bisect.insort(self.fills, row, key=lambda f: f.at)
            else:
                self.fills.append(row)
        if self.fills:
            horizon = self.fills[-1].at - FILL_SKEW
            self.recent_fills = {i: at for i, at in self.recent_fills.items() if at >= horizon}

    @property
    def fills_to(self) -> datetime | None:
        """The newest fill's time read so far."""
        return self.fills[-1].at if self.fills else None

    def moves(self) -> list[LedgerMove]:
        return [*self.held.values(), *self.flows]


class PriceSource:
    """Daily closes and last prices: from the market service where this process runs one,
    else straight from the candle store (a ``tradepilot worker`` runs no market)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._store: Any = None
        self._memo: dict[tuple[str, date, date], list[tuple[date, Decimal]]] | None = None

    @contextlib.contextmanager
    def memoised(self) -> Iterator[None]:
        """Within the block, each (symbol, range) is read once: a recording run over many
        accounts asks for the same closes again and again."""
        self._memo = {}
        try:
            yield
        finally:
            self._memo = None

    def _market(self) -> Any:
        return self._runtime.services.get("market")

    def last_price(self, symbol: str) -> Decimal | None:
        market = self._market()
        return None if market is None else market.last_price(symbol)

    async def closes(self, symbol: str, first: date, last: date) -> list[tuple[date, Decimal]]:
        memo = self._memo
        if memo is not None and (symbol, first, last) in memo:
            return memo[(symbol, first, last)]
        start, end = day_start(first), day_start(last + timedelta(days=1))
        market = self._market()
        if market is not None:
            bars = await market.read_candles(symbol, "1d", start, end)
        else:
            bars = await asyncio.to_thread(self._candle_store().read_bars, symbol, "1d", start, end)
        closes = [(utc_day(bar.open_time), bar.close) for bar in bars]
        if memo is not None:
            memo[(symbol, first, last)] = closes
        return closes

    def _candle_store(self) -> Any:
        if self._store is None:
            from tradepilot.market.setup import configured_venue
            from tradepilot.market.store import CandleStore

            settings = self._runtime.settings
            self._store = CandleStore.for_settings(settings, configured_venue(settings))
        return self._store


class EquityRecorder:
    """Replays accounts' ledgers into their equity history, and writes it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.prices = PriceSource(runtime)
        self._pending: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Any = None
        self._loaded: OrderedDict[uuid.UUID, _Loaded] = OrderedDict()

    # -- reading (no writes) ---------------------------------------------------------------

    async def unfinished_days(self, account: TradingAccount, now: datetime | None = None) -> list[DayFigures]:
        """The figures of every day after the account's last final row, up to today (now)."""
        now = now or self.runtime.clock.now()
        async with self.runtime.db.session() as session:
            start, moves, fills = await self._load(session, account)
        return await self._replay(account, start, moves, fills, now)

    # -- writing ---------------------------------------------------------------------------

    async def record(self, account_id: uuid.UUID, now: datetime | None = None, *, fresh: bool = False) -> int:
        """Bring one account's history up to now; returns the number of day rows written.

        ``fresh``: read the account's ledger since its last final row again in full instead of
        only what is new since this process last read it (the 5-minute job does: whatever an
        incremental read could miss is corrected within 5 minutes)."""
        now = now or self.runtime.clock.now()
        async with self.runtime.db.session() as session:
            account = await session.get(TradingAccount, account_id)
            if account is None:
                return 0
            start, moves, fills = await self._load(session, account, fresh=fresh)
        figures = await self._replay(account, start, moves, fills, now)
        if not figures:
            return 0
        today = utc_day(now)
        async with self.runtime.db.transaction() as session:
            for row in figures:
                await self._upsert_day(session, account, row, final=row.day < today, now=now)
            last = figures[-1]
            if last.day == today:
                await self._upsert_intraday(session, account, last, now)
        return len(figures)

    async def record_all(self, ctx: JobContext | None = None) -> dict[str, int]:
        """Every account that may still change: active ones, and closed ones not yet final."""
        now = self.runtime.clock.now()
        async with self.runtime.db.session() as session:
            accounts = list((await session.execute(
                select(TradingAccount.id, TradingAccount.status, TradingAccount.closed_at)
                .order_by(TradingAccount.created_at))).all())
            final_days = dict((await session.execute(  # type: ignore[arg-type]
                select(EquityDay.account_id, func.max(EquityDay.day)).where(EquityDay.final)
                .group_by(EquityDay.account_id))).all())
        with self.prices.memoised():
            recorded, skipped = await self._record_each(accounts, final_days, now, ctx)
        pruned = await self.prune(now)
        return {"accounts": recorded, "skipped": skipped, "intraday_pruned": pruned}

    async def _record_each(self, accounts: Sequence[Any], final_days: dict[uuid.UUID, date], now: datetime,
                           ctx: JobContext | None) -> tuple[int, int]:
        recorded, skipped = 0, 0
        for i, (account_id, status, closed_at) in enumerate(accounts):
            if status != AccountStatus.ACTIVE and closed_at is not None and \
                    final_days.get(account_id, date.min) >= utc_day(closed_at):
                skipped += 1
                continue
            try:
                await self.record(account_id, now, fresh=True)
                recorded += 1
            except Exception:  # one broken account must not starve the others
                logger.exception("equity recording failed for account %s", account_id)
            if ctx is not None and i % 50 == 49:
                await ctx.progress((i + 1) / len(accounts), f"{i + 1} accounts")
        return recorded, skipped

    async def prune(self, now: datetime) -> int:
        async with self.runtime.db.transaction() as session:
            result = await session.execute(
                delete(EquityIntraday).where(EquityIntraday.at < now - INTRADAY_RETENTION))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- after fills -----------------------------------------------------------------------

    async def start(self) -> None:
        self._subscription = await self.runtime.bus.subscribe(Topics.all_user(FILLS_KIND), self._on_fill)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_fill(self, event: Event) -> None:
        fill = (event.payload or {}).get("fill")
        try:
            account_id = uuid.UUID(str(fill.get("account_id")))  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            return
        if account_id in self._pending:
            return  # already due: that recording will include this fill too
        loop = asyncio.get_running_loop()
        self._pending[account_id] = loop.call_later(FILL_DEBOUNCE_SECONDS, self._record_soon, account_id)

    def _record_soon(self, account_id: uuid.UUID) -> None:
        self._pending.pop(account_id, None)
        task = asyncio.create_task(self._record_quietly(account_id), name=f"equity-{account_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_quietly(self, account_id: uuid.UUID) -> None:
        try:
            await self.record(account_id)
        except Exception:  # the 5-minute job catches up
            logger.exception("equity recording after a fill failed for account %s", account_id)

    # -- internals -------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, account: TradingAccount, *, fresh: bool = False
                    ) -> tuple[_Start, list[LedgerMove], list[_FillRow]]:
        start = await self._start(session, account)
        loaded = self._loaded.get(account.id)
        if fresh or loaded is None or loaded.start != start:  # a new final row: read from it
            loaded = _Loaded(start=start, last_seq=start.ledger_seq)
        self._loaded[account.id] = loaded
        self._loaded.move_to_end(account.id)
        while len(self._loaded) > LOADED_ACCOUNTS:
            self._loaded.popitem(last=False)
        loaded.add_moves((await session.execute(
            select(LedgerTransaction.seq, LedgerTransaction.created_at, LedgerPosting.asset,
                   LedgerPosting.bucket, LedgerPosting.amount)
            .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.account_id == account.id, LedgerTransaction.seq > loaded.last_seq)
            .order_by(LedgerTransaction.seq))).all())
        since = day_start(start.first_day)
        if loaded.fills_to is not None:
            since = max(since, loaded.fills_to - FILL_SKEW)
        loaded.add_fills((await session.execute(
            select(Fill.id, Fill.created_at, Fill.symbol, Fill.price, Fill.realised_pnl)
            .where(Fill.account_id == account.id, Fill.created_at >= since)
            .order_by(Fill.created_at))).all())
        return start, loaded.moves(), list(loaded.fills)

    @staticmethod
    async def _start(session: AsyncSession, account: TradingAccount) -> _Start:
        """Where the replay begins: the last final row, or the account's opening."""
        last = (await session.scalars(
            select(EquityDay).where(EquityDay.account_id == account.id, EquityDay.final)
            .order_by(EquityDay.day.desc()).limit(1))).first()
        if last is None:
            return _Start(holdings={}, ledger_seq=0, first_day=utc_day(account.created_at),
                          seed_prices={}, seed_day=None)
        holdings = {a: Decimal(q) for a, q in (last.holdings or {}).items()}
        seeds = {a: EXACT.divide(Decimal(v), holdings[a]) for a, v in (last.values or {}).items() if holdings.get(a)}
        return _Start(holdings=holdings, ledger_seq=last.ledger_seq, first_day=last.day + timedelta(days=1),
                      seed_prices=seeds, seed_day=last.day)

    async def _replay(self, account: TradingAccount, start: _Start, moves: list[LedgerMove],
                      fills: Sequence[_FillRow], now: datetime) -> list[DayFigures]:
        today = utc_day(now)
        last_day = today
        if account.status != AccountStatus.ACTIVE and account.closed_at is not None:
            last_day = min(today, utc_day(account.closed_at))
        if last_day < start.first_day:
            return []
        currency = account.quote_currency
        assets = set(start.holdings) | {m.asset for m in moves} | {f.symbol.split("/")[0] for f in fills}
        assets.discard(currency)
        closes = await self._closes(currency, assets, start, fills, last_day)
        if last_day == today:
            live = {}
            for asset in assets:
                for symbol in (f"{asset}/{currency}", f"{currency}/{asset}"):
                    price = self.prices.last_price(symbol)
                    if price is not None:
                        live[symbol] = price
            closes.set_live(today, live)
        return replay(currency=currency, holdings=start.holdings, ledger_seq=start.ledger_seq,
                      first_day=start.first_day, last_day=last_day, moves=moves,
                      fills=[FillMove(day=f.day, quote_asset=f.symbol.split("/")[1], realised_pnl=f.pnl)
                             for f in fills],
                      price_on=closes.price_on)

    async def _closes(self, currency: str, assets: Iterable[str], start: _Start, fills: Sequence[_FillRow],
                      last_day: date) -> DailyCloses:
        closes = DailyCloses()
        for asset, price in start.seed_prices.items():
            if start.seed_day is not None and asset != currency:
                closes.add(f"{asset}/{currency}", start.seed_day, price)
        first = start.first_day - PRICE_LOOKBACK
        for asset in sorted(assets):
            symbol = f"{asset}/{currency}"
            try:
                bars = await self.prices.closes(symbol, first, last_day)
            except Exception:  # no market for it: fills and seeds stand in
                logger.debug("no daily closes for %s", symbol, exc_info=True)
                bars = []
            for day, close in bars:
                closes.add(symbol, day, close)
        last_fill: dict[tuple[str, date], Decimal] = {}
        for fill in fills:  # oldest first: the day's last fill wins
            last_fill[(fill.symbol, fill.day)] = fill.price
        for (symbol, day), price in last_fill.items():
            closes.add(symbol, day, price, overwrite=False)
        return closes

    async def _upsert_day(self, session: AsyncSession, account: TradingAccount, row: DayFigures, *,
                          final: bool, now: datetime) -> None:
        values = {
            "account_id": account.id, "day": row.day, "user_id": account.user_id,
            "currency": account.quote_currency, "final": final, "equity": row.equity, "cash": row.cash,
            "positions_value": row.positions_value, "net_flows": row.net_flows, "fees": row.fees,
            "realised_pnl": row.realised_pnl, "trades": row.trades, "holdings": row.holdings_json(),
            "values": row.values_json(), "unpriced": row.unpriced, "ledger_seq": row.ledger_seq,
            "valued_at": now,
        }
        stmt = _insert(session)(EquityDay).values(**values)
        update = {k: v for k, v in values.items() if k not in ("account_id", "day")}
        await session.execute(stmt.on_conflict_do_update(index_elements=["account_id", "day"], set_=update))

    async def _upsert_intraday(self, session: AsyncSession, account: TradingAccount, row: DayFigures,
                               now: datetime) -> None:
        at = now.replace(second=0, microsecond=0)  # at most one point a minute
        values = {"account_id": account.id, "at": at, "user_id": account.user_id,
                  "currency": account.quote_currency, "equity": row.equity, "cash": row.cash,
                  "positions_value": row.positions_value, "day_flows": row.net_flows}
        stmt = _insert(session)(EquityIntraday).values(**values)
        update = {k: v for k, v in values.items() if k not in ("account_id", "at")}
        await session.execute(stmt.on_conflict_do_update(index_elements=["account_id", "at"], set_=update))


@dataclass(frozen=True, slots=True)
class _FillRow:
    day: date
    symbol: str
    price: Decimal
    pnl: Decimal | None
    at: datetime


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def recorder_of(runtime: Runtime) -> EquityRecorder:
    recorder = runtime.services.get("equity")
    if recorder is None:
        recorder = runtime.services["equity"] = EquityRecorder(runtime)
    return recorder


@job_handler(RECORD_JOB, timeout_seconds=600)
async def record_equity(ctx: JobContext, payload: dict[str, object]) -> dict[str, int]:
    return await recorder_of(ctx.runtime).record_all(ctx)
