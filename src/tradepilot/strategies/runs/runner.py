"""One live run, under its lease (``strategy-run:<run id>``): closed bars in, orders out.

Each step reads the run (a run no longer ``running`` ends the work, which releases the
lease), delivers the fills of the run's orders since the last step to ``on_fill``, then each
bar closed on every symbol after ``last_bar_at``, oldest first: the strategy decides on the
bar's window (the last ``strategy_runs_window_bars`` bars), and its orders, the new
``last_bar_at`` and its state (and an AI-signals run's model signals of the bar,
``signals/autotrade.py``) are written in ONE transaction fenced by the lease token. So a
crash before the commit replays the bar (nothing of it was written), a crash after it never
does, and a process that lost the lease cannot write at all. Each order's ``client_order_id``
is derived from the run id and the bar's time (``sr-<run>-<bar ms>-<n>``), unique per account
forever, so even a replay that got past the fence could not trade twice.

On a live (exchange) account the orders cannot be written in that transaction: they go
through the API's own live path (``trading/live/placement.py``) *before* it — each recorded
``pending_new`` (fenced by the lease, attributed to the run) and committed, sent once with the
exchange-side id ``tp-<order id hex>``, its outcome recorded — and the step's transaction then
records progress, state and events. A crash between the two replays the bar; its ``sr-`` ids
find the orders recorded already (``DuplicateClientOrderId``) and nothing is sent again.
Exchange refusals are the run's rejections; an outcome still unknown stays ``pending_new``
for reconciliation.

A strategy that raises is the run's failure, not the process's: the run is marked ``failed``
with the error and an event, and the work ends; other runs go on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.errors import TradePilotError
from tradepilot.core.lease import Lease
from tradepilot.identity.lifecycle import account_is_stopped
from tradepilot.identity.models import User
from tradepilot.identity.principal import AuthUser
from tradepilot.market.frame import to_ms
from tradepilot.market.types import TIMEFRAMES, Bar
from tradepilot.signals.autotrade import MadeSignal
from tradepilot.signals.autotrade import store as store_signals
from tradepilot.signals.feed import feed_signals
from tradepilot.strategies.bars import Bars, align
from tradepilot.strategies.base import EventStrategy, FillEvent, SignalAdapter, SignalStrategy
from tradepilot.strategies.catalog import build_strategy
from tradepilot.strategies.runs.context import LiveContext, UnsupportedOrder, order_body
from tradepilot.strategies.runs.models import RunStatus, StrategyRun
from tradepilot.strategies.runs.service import ORDER, emit_run_event, end_run
from tradepilot.trading import ledger
from tradepilot.trading.execution import order_payload
from tradepilot.trading.models import TradingAccount
from tradepilot.trading.order_models import Fill, Order, OrderStatus, Position
from tradepilot.trading.orders import DuplicateClientOrderId

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.runtime import Runtime
    from tradepilot.trading.orders import OrderService

logger = logging.getLogger("tradepilot.strategies.runs")

ORDER_IDS_KEPT = 1000  # the newest strategy order ids kept in the state (their fills reach on_fill)


def lease_name(run_id: uuid.UUID | str) -> str:
    return f"strategy-run:{run_id}"


def client_order_id(run_id: uuid.UUID, at: datetime, n: int, kind: str = "") -> str:
    """Stable across replays of the same step: ``sr-<run hex>-<bar open ms>-<n>`` for a bar's
    orders, ``…-f<n>`` for orders placed from ``on_fill`` (keyed by the last fill delivered)."""
    return f"sr-{run_id.hex}-{to_ms(at)}-{kind}{n}"


class StrategyFailed(Exception):
    """The strategy's own code raised (or asked for what a live run cannot do)."""


class RunEnded(Exception):
    """The run stopped while its live orders were being recorded: nothing more is placed."""


@dataclass
class LiveOutcome:
    """A step's live orders, placed before its transaction: (strategy order id, order id,
    payload) for each order the exchange has (or may have), the refusals (symbol, error)."""

    placed: list[tuple[int, uuid.UUID, dict[str, Any]]] = field(default_factory=list)
    rejected: list[tuple[str, TradePilotError]] = field(default_factory=list)


@dataclass
class Snapshot:
    """What the strategy may see of the account on this step, read before calling it."""

    cash: Decimal
    positions: dict[str, Decimal]
    open_orders: dict[str, set[str]]


class LiveRunner:
    def __init__(self, runtime: Runtime, run_id: uuid.UUID, lease: Lease) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.lease = lease
        self.strategy: EventStrategy | None = None
        self.started = False
        self.live_account: TradingAccount | None = None  # read once: the run's account, when live

    @property
    def market(self) -> MarketService:
        return self.runtime.services["market"]  # type: ignore[no-any-return]

    @property
    def orders(self) -> OrderService:
        return self.runtime.services["orders"]  # type: ignore[no-any-return]

    # -- one step ---------------------------------------------------------------------------

    async def step(self) -> bool:
        """Process what is new; False once the run is no longer running (the work ends)."""
        run = await self._read()
        if run is None or run.status != RunStatus.RUNNING:
            return False
        try:
            if self.strategy is None:
                self.live_account = await self._live_account(run)
                self.strategy = self._build(run)
            await self._deliver_fills(run)
            for bar_time in await self._new_bars(run):
                if not await self._process_bar(run, bar_time):
                    return False
                run = await self._read()
                if run is None or run.status != RunStatus.RUNNING:
                    return False
        except StrategyFailed as exc:
            await self._fail(str(exc))
            return False
        return True

    async def _read(self) -> StrategyRun | None:
        async with self.runtime.db.read() as session:
            run = await session.get(StrategyRun, self.run_id)
            if run is not None:
                session.expunge(run)
        return run

    async def _live_account(self, run: StrategyRun) -> TradingAccount | None:
        async with self.runtime.db.read() as session:
            account = await session.get(TradingAccount, run.account_id)
            if account is None or not account.is_live:
                return None
            session.expunge(account)
        return account

    def _build(self, run: StrategyRun) -> EventStrategy:
        try:
            strategy = build_strategy(run.strategy, run.params)
        except Exception as exc:  # noqa: BLE001  (a plugin's constructor may raise anything: the run fails)
            raise StrategyFailed(f"the strategy cannot be built: {exc}") from None
        return SignalAdapter(strategy) if isinstance(strategy, SignalStrategy) else strategy  # type: ignore[return-value]

    async def _new_bars(self, run: StrategyRun) -> list[datetime]:
        """Open times of the bars closed on every symbol after ``last_bar_at`` (or, before the
        first, closed since the run started), oldest first."""
        now = self.runtime.clock.now()
        step = timedelta(seconds=TIMEFRAMES[run.timeframe])
        start = run.last_bar_at + step if run.last_bar_at is not None else run.started_at - step
        common: set[datetime] | None = None
        for symbol in run.symbols:
            bars = await self.market.read_candles(symbol, run.timeframe, start=start, end=now)
            times = {b.open_time for b in bars if b.closed and b.open_time + step <= now}
            common = times if common is None else common & times
        return sorted(common or ())

    async def _window(self, run: StrategyRun, bar_time: datetime) -> dict[str, Bars]:
        step = timedelta(seconds=TIMEFRAMES[run.timeframe])
        limit = self.runtime.settings.strategy_runs_window_bars
        series = [_bars(symbol, await self.market.read_candles(symbol, run.timeframe, end=bar_time + step,
                                                                limit=limit))
                  for symbol in run.symbols]
        return {b.symbol: b for b in align(series)}

    # -- the strategy's decisions -------------------------------------------------------------

    def _call(self, what: str, func: Any, *args: Any) -> None:
        try:
            func(*args)
        except Exception as exc:
            logger.warning("strategy raised", extra={"run_id": str(self.run_id), "callback": what}, exc_info=True)
            raise StrategyFailed(f"{what} raised {type(exc).__name__}: {exc}"[:2000]) from None

    def _context(self, run: StrategyRun, windows: dict[str, Bars], snap: Snapshot) -> LiveContext:
        return LiveContext(symbols=list(run.symbols), windows=windows,
                           positions={s: float(q) for s, q in snap.positions.items()}, free_cash=float(snap.cash),
                           open_orders=snap.open_orders, next_id=int(run.state.get("next_id", 1)))

    def _start(self, ctx: LiveContext, run: StrategyRun) -> None:
        strategy = self.strategy
        assert strategy is not None
        if isinstance(strategy, SignalAdapter):  # its signals are recomputed over each bar's window
            self._call("signals", strategy.on_start, ctx)
            return
        if not self.started:
            self._call("on_start", strategy.on_start, ctx)
            saved = run.state.get("strategy")
            if saved and hasattr(strategy, "restore"):
                self._call("restore", strategy.restore, saved)
            self.started = True

    async def _process_bar(self, run: StrategyRun, bar_time: datetime) -> bool:
        windows = await self._window(run, bar_time)
        if any(len(w) == 0 or to_ms(bar_time) != int(w.time[-1]) for w in windows.values()):
            return await self._commit(run, bar_time, None, [])  # not on every symbol: nothing to decide
        snap = await self._snapshot(run)
        ctx = self._context(run, windows, snap)
        made = await feed_signals(self.runtime, self.strategy, run, bar_time)  # a signal-trading strategy's input
        self._start(ctx, run)
        assert self.strategy is not None
        self._call("on_bar", self.strategy.on_bar, ctx, len(next(iter(windows.values()))) - 1)
        live = await self._live_orders(run, ctx, bar_time, "")
        if live is False:
            return False
        return await self._commit(run, bar_time, ctx, [], live=_placed(live), made=made)

    async def _deliver_fills(self, run: StrategyRun) -> None:
        """``on_fill`` for the fills of the run's orders since the last step (event strategies)."""
        strategy = self.strategy
        if strategy is None or isinstance(strategy, SignalAdapter) or not run.state.get("orders"):
            return
        ids = {v: int(k) for k, v in run.state["orders"].items()}
        cursor = run.state.get("fills_after")
        async with self.runtime.db.read() as session:
            query = (select(Fill, Order.client_order_id).join(Order, Order.id == Fill.order_id)
                     .where(Order.strategy_run_id == run.id))
            if cursor is not None:
                at, fill_id = datetime.fromisoformat(cursor[0]), uuid.UUID(cursor[1])
                query = query.where(or_(Fill.created_at > at, and_(Fill.created_at == at, Fill.id > fill_id)))
            rows = (await session.execute(query.order_by(Fill.created_at, Fill.id).limit(500))).all()
        if not rows:
            return
        if not self.started:
            return  # on_start has not run in this process yet: the fills wait for the next bar
        windows = await self._window(run, run.last_bar_at or self.runtime.clock.now())
        ctx = self._context(run, windows, await self._snapshot(run))
        for fill, _ in rows:
            sid = ids.get(str(fill.order_id))
            if sid is None:
                continue
            self._call("on_fill", strategy.on_fill, ctx, FillEvent(
                order_id=sid, symbol=fill.symbol, side=fill.side, price=float(fill.price),  # type: ignore[arg-type]
                quantity=float(fill.quantity), fee=float(fill.fee), time=to_ms(fill.created_at),
                role=fill.liquidity, tag=""))
        last = rows[-1][0]
        live = await self._live_orders(run, ctx, last.created_at, "f")
        if live is False:
            return
        await self._commit(run, None, ctx, [last.created_at.isoformat(), str(last.id)], key=(last.created_at, "f"),
                           live=_placed(live))

    async def _snapshot(self, run: StrategyRun) -> Snapshot:
        async with self.runtime.db.read() as session:
            balances = {b.asset: b for b in await ledger.get_balances(session, run.account_id)}
            positions = {p.symbol: p.quantity for p in await session.scalars(
                select(Position).where(Position.account_id == run.account_id, Position.symbol.in_(run.symbols)))}
            open_orders: dict[str, set[str]] = {}
            for symbol, type_ in (await session.execute(select(Order.symbol, Order.type).where(
                    Order.strategy_run_id == run.id, Order.status.in_(tuple(OrderStatus.OPEN))))).all():
                open_orders.setdefault(symbol, set()).add(type_)
        quote = self.market.instrument(run.symbols[0]).quote
        cash = balances[quote].free if quote in balances else Decimal(0)
        return Snapshot(cash=cash, positions=positions, open_orders=open_orders)

    # -- writing ---------------------------------------------------------------------------------

    async def _commit(self, run: StrategyRun, bar_time: datetime | None, ctx: LiveContext | None,
                      fills_after: list[str], key: tuple[datetime, str] | None = None,
                      live: LiveOutcome | None = None, made: list[MadeSignal] | None = None) -> bool:
        """The step's orders, cancels, progress and state in one transaction fenced by the lease;
        False when the run stopped meanwhile (nothing is written then). ``key``: what the
        orders' client ids derive from when the step is not a bar (the last fill delivered).
        ``live``: a live account's orders, placed already: only recorded in the run here.
        ``made``: the model signals of the bar (an AI-signals run trading the model's own)."""
        now = self.runtime.clock.now()
        key_time, kind = key or (bar_time or now, "")
        async with self.runtime.db.transaction() as session:
            await self.lease.assert_held(session)
            row = await session.scalar(select(StrategyRun).where(StrategyRun.id == self.run_id).with_for_update()
                                       .execution_options(populate_existing=True))
            if row is None or row.status != RunStatus.RUNNING:
                return False
            state = dict(row.state or {})
            orders_map: dict[str, str] = dict(state.get("orders") or {})
            if made:
                await store_signals(self.runtime, session, row.user_id, made)
            if live is not None:
                await self._record_live(session, row, live, orders_map, now)
            elif ctx is not None:
                await self._cancel(session, row, ctx, orders_map)
                await self._place(session, row, ctx, key_time, kind, orders_map, now)
            if ctx is not None:
                state["next_id"] = ctx.next_id  # the strategy's order numbers never repeat
            if len(orders_map) > ORDER_IDS_KEPT:
                orders_map = dict(sorted(orders_map.items(), key=lambda kv: int(kv[0]))[-ORDER_IDS_KEPT:])
            state["orders"] = orders_map
            if fills_after:
                state["fills_after"] = fills_after
            strategy = self.strategy
            if strategy is not None and not isinstance(strategy, SignalAdapter) and hasattr(strategy, "state"):
                try:
                    state["strategy"] = strategy.state()
                except Exception as exc:  # noqa: BLE001  (the strategy's own code: the run fails)
                    raise StrategyFailed(f"state raised {type(exc).__name__}: {exc}") from None
            row.state = state
            if bar_time is not None:
                row.last_bar_at = bar_time
            row.updated_at = now
        return True

    async def _principal(self, session: AsyncSession, row: StrategyRun) -> AuthUser | None:
        user = await session.get(User, row.user_id)
        if user is None or account_is_stopped(user):
            return None
        return AuthUser(id=user.id, email=user.email, role=user.role, plan=user.plan,
                        scopes=frozenset({"read", "trade"}))

    async def _place(self, session: AsyncSession, row: StrategyRun, ctx: LiveContext, key_time: datetime,
                     kind: str, orders_map: dict[str, str], now: datetime) -> None:
        if not ctx.submitted:
            return
        principal = await self._principal(session, row)
        if principal is None:
            return  # a suspension is ending the run; its hook marks it
        balances = {b.asset: b.free for b in await ledger.get_balances(session, row.account_id)}
        positions = {p.symbol: p.quantity for p in await session.scalars(
            select(Position).where(Position.account_id == row.account_id))}
        for n, (strategy_order_id, request) in enumerate(ctx.submitted):
            cid = client_order_id(row.id, key_time, n, kind)
            try:
                instrument = self.market.instrument(request.symbol)
                free_base = balances.get(instrument.base, Decimal(0))
                body = order_body(request, instrument=instrument, account_id=row.account_id, client_order_id=cid,
                                  reference_price=_last_close(ctx, request.symbol),
                                  free_cash=balances.get(instrument.quote, Decimal(0)),
                                  position=min(positions.get(request.symbol, Decimal(0)), free_base),
                                  taker_fee=self.orders.rates.taker)
            except UnsupportedOrder as exc:
                raise StrategyFailed(str(exc)) from None
            except TradePilotError as exc:
                await self._rejected(session, row, request.symbol, exc, now)
                continue
            if body is None:
                continue
            try:
                prepared = self.orders.prepare(body)
                async with session.begin_nested():
                    order = await self.orders.place(session, principal, prepared)
                    order.strategy_id, order.strategy_run_id = row.strategy_config_id, row.id
                    await session.flush()
            except DuplicateClientOrderId:
                continue  # this bar was placed already (a replay): never twice
            except TradePilotError as exc:
                await self._rejected(session, row, request.symbol, exc, now)
                continue
            orders_map[str(strategy_order_id)] = str(order.id)
            row.orders_placed += 1
            await emit_run_event(session, row, ORDER, now, order=order_payload(order))

    # -- live (exchange) accounts ----------------------------------------------------------------

    async def _live_orders(self, run: StrategyRun, ctx: LiveContext, key_time: datetime,
                           kind: str) -> LiveOutcome | bool:
        """A live account's cancels and orders, through the exchange before the step's
        transaction (no lock is held across the network). True: not a live run (the paper
        path places them in the transaction); False: the run ended meanwhile."""
        account = self.live_account
        if account is None:
            return True
        outcome = LiveOutcome()
        if not ctx.submitted and not ctx.cancels:
            return outcome
        async with self.runtime.db.read() as session:
            principal = await self._principal(session, run)
            balances = {b.asset: b.free for b in await ledger.get_balances(session, run.account_id)}
            positions = {p.symbol: p.quantity for p in await session.scalars(
                select(Position).where(Position.account_id == run.account_id))}
            known = run.state.get("orders") or {}
            cancels: list[Order] = []
            for strategy_order_id in ctx.cancels:
                order_id = known.get(str(strategy_order_id))
                order = None if order_id is None else await session.get(Order, uuid.UUID(order_id))
                if order is not None and order.is_open:
                    session.expunge(order)
                    cancels.append(order)
        if principal is None:
            return outcome  # a suspension is ending the run; its hook marks it
        for order in cancels:
            try:
                await self.orders.live.cancel(order)
            except TradePilotError:
                continue  # final meanwhile, or the exchange failed: the order stays as it is
        for n, (strategy_order_id, request) in enumerate(ctx.submitted):
            cid = client_order_id(run.id, key_time, n, kind)
            try:
                instrument = self.market.instrument(request.symbol)
                body = order_body(request, instrument=instrument, account_id=run.account_id, client_order_id=cid,
                                  reference_price=_last_close(ctx, request.symbol),
                                  free_cash=balances.get(instrument.quote, Decimal(0)),
                                  position=min(positions.get(request.symbol, Decimal(0)),
                                               balances.get(instrument.base, Decimal(0))),
                                  taker_fee=self.orders.rates.taker,
                                  market_buy_margin=self.runtime.settings.live_market_buffer)
            except UnsupportedOrder as exc:
                raise StrategyFailed(str(exc)) from None
            except TradePilotError as exc:
                outcome.rejected.append((request.symbol, exc))
                continue
            if body is None:
                continue
            try:
                order_id, payload = await self.orders.live.place(principal, body, account, _answer,
                                                                 self._fence(run))
            except RunEnded:
                return False
            except DuplicateClientOrderId:  # a replay: recorded (and sent) by the first attempt
                found = await self._by_client_id(run, cid)
                if found is not None:
                    outcome.placed.append((strategy_order_id, *found))
                continue
            except TradePilotError as exc:  # refused here or by the exchange (rejected, rate limited…)
                outcome.rejected.append((request.symbol, exc))
                continue
            outcome.placed.append((strategy_order_id, order_id, payload))
        return outcome

    def _fence(self, run: StrategyRun) -> Any:
        """Inside the live order's recording transaction: still ours and running, attributed."""
        async def fence(session: AsyncSession, order: Order) -> None:
            await self.lease.assert_held(session)
            status = await session.scalar(select(StrategyRun.status).where(StrategyRun.id == run.id))
            if status != RunStatus.RUNNING:
                raise RunEnded
            order.strategy_id, order.strategy_run_id = run.strategy_config_id, run.id
        return fence

    async def _by_client_id(self, run: StrategyRun, cid: str) -> tuple[uuid.UUID, dict[str, Any]] | None:
        async with self.runtime.db.read() as session:
            order = await session.scalar(select(Order).where(Order.account_id == run.account_id,
                                                             Order.client_order_id == cid))
            return None if order is None else (order.id, order_payload(order))

    async def _record_live(self, session: AsyncSession, row: StrategyRun, live: LiveOutcome,
                           orders_map: dict[str, str], now: datetime) -> None:
        """The live orders in the run: an order already in its state (a replay of a step that
        committed) is not counted again; one recorded by an attempt that crashed before its
        commit is counted now, with its event."""
        known = set(orders_map.values())
        for strategy_order_id, order_id, payload in live.placed:
            orders_map[str(strategy_order_id)] = str(order_id)
            if str(order_id) in known:
                continue
            row.orders_placed += 1
            await emit_run_event(session, row, ORDER, now, order=payload)
        for symbol, exc in live.rejected:
            await self._rejected(session, row, symbol, exc, now)

    async def _rejected(self, session: AsyncSession, row: StrategyRun, symbol: str, exc: TradePilotError,
                        now: datetime) -> None:
        logger.info("strategy order refused", extra={"run_id": str(row.id), "code": exc.code})
        row.orders_rejected += 1
        await emit_run_event(session, row, ORDER, now, rejected={"symbol": symbol, "code": exc.code,
                                                                 "detail": exc.detail})

    async def _cancel(self, session: AsyncSession, row: StrategyRun, ctx: LiveContext,
                      orders_map: dict[str, str]) -> None:
        for strategy_order_id in ctx.cancels:
            order_id = orders_map.get(str(strategy_order_id))
            if order_id is None:
                continue
            order = await session.get(Order, uuid.UUID(order_id))
            if order is None or not order.is_open:
                continue
            try:
                async with session.begin_nested():
                    await self.orders.cancel(session, order)
            except TradePilotError:
                continue

    async def _fail(self, error: str) -> None:
        async with self.runtime.db.transaction() as session:
            await self.lease.assert_held(session)
            await end_run(self.runtime, session, self.run_id, status=RunStatus.FAILED, reason="error", error=error)
        logger.warning("strategy run failed", extra={"run_id": str(self.run_id), "error": error})


def _bars(symbol: str, bars: list[Bar]) -> Bars:
    closed = [b for b in bars if b.closed]
    return Bars.from_arrays(symbol, np.array([to_ms(b.open_time) for b in closed], dtype=np.int64),
                            np.array([float(b.open) for b in closed]), np.array([float(b.high) for b in closed]),
                            np.array([float(b.low) for b in closed]), np.array([float(b.close) for b in closed]),
                            np.array([float(b.volume) for b in closed]))


def _placed(live: LiveOutcome | bool) -> LiveOutcome | None:
    return live if isinstance(live, LiveOutcome) else None


async def _answer(session: AsyncSession, order: Order, status: int) -> tuple[uuid.UUID, dict[str, Any]]:
    """What a run keeps of a live order's outcome (read inside the transaction recording it)."""
    return order.id, order_payload(order)


def _last_close(ctx: LiveContext, symbol: str) -> Decimal:
    window = ctx.windows.get(symbol)
    if window is None or len(window) == 0:
        return Decimal(0)
    return Decimal(repr(float(window.close[-1])))
