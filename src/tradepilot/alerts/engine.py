"""The alert engine: one process (lease ``alerts-engine``) evaluates every active alert.

Under the lease it loads the active alerts from the database into a :class:`PriceAlertIndex`
and evaluates each market trade against it (O(log n + k) per tick), and re-evaluates P&L and
risk alerts of a user after their fills and positions change (debounced to the next beat) and
every ``alerts_portfolio_seconds`` for everyone (prices move unrealised P&L). What matches is
fired by :func:`firing.fire` — fenced by the lease token and claimed by a conditional UPDATE —
and leaves the index: a one-shot alert for good, a recurring one until its cool-down has
passed (a heap of re-arm times, on the injected clock).

It learns of new, paused, resumed, cancelled and deleted alerts from ``alert.changed`` events
(outbox → bus) and re-reads the table every ``alerts_resync_seconds``, so a lost message costs
at most that delay. Price history (the previous price of ``crosses``, the windows of
``percent_change``) lives in memory and starts again with a new holder.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tradepilot.alerts import constants as k
from tradepilot.alerts.constants import AlertStatus
from tradepilot.alerts.firing import fire
from tradepilot.alerts.models import Alert
from tradepilot.alerts.portfolio_measures import holds, measure
from tradepilot.alerts.price_index import PriceAlertIndex, PriceRule
from tradepilot.core.events import Event, Topics
from tradepilot.core.lease import Lease, LeaseLost, lease_manager

if TYPE_CHECKING:
    from tradepilot.market.service import MarketService
    from tradepilot.market.types import Trade
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.alerts")

BEAT_SECONDS = 1.0
STOP_TIMEOUT = 10.0
PORTFOLIO_KINDS = ("positions", "fills")


def price_rule(alert: Alert) -> PriceRule:
    return PriceRule(id=str(alert.id), symbol=alert.symbol or "", condition=alert.condition,
                     threshold=alert.threshold, direction=alert.direction, window_seconds=alert.window_seconds)


class AlertEngine:
    def __init__(self, runtime: Runtime, market: MarketService | None) -> None:
        self.runtime = runtime
        self.market = market
        self.index = PriceAlertIndex()
        self.portfolio: dict[str, Alert] = {}  # P&L and risk alerts (detached rows), by id
        self.cooling: list[tuple[datetime, str]] = []  # (re-arm at, id) of fired recurring price alerts
        self.cooling_rules: dict[str, PriceRule] = {}
        self.lease: Lease | None = None
        self.ready = asyncio.Event()
        self._dirty_users: set[str] = set()
        self.ticks_evaluated = 0  # trades evaluated (tests wait on it; a cheap liveness figure)
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None

    # -- under the lease ---------------------------------------------------------------------

    async def run(self, lease: Lease) -> None:
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._queue = queue
        put: Callable[[tuple[str, Any]], None] = queue.put_nowait
        unsubscribe = self.market.subscribe_trades(lambda t: put(("trade", t))) if self.market else (lambda: None)
        subscriptions = [await self.runtime.bus.subscribe(Topics.all_user(k.TOPIC_KIND), self._on_alert_event)]
        for kind in PORTFOLIO_KINDS:
            subscriptions.append(await self.runtime.bus.subscribe(Topics.all_user(kind), self._on_portfolio_event))
        beat = asyncio.create_task(self._beat(queue), name="alerts-beat")
        try:
            self.lease = lease
            await self.resync()
            logger.info("alert engine owned", extra={"token": lease.token, "price_alerts": len(self.index),
                                                     "portfolio_alerts": len(self.portfolio)})
            self.ready.set()
            while True:
                kind, item = await queue.get()
                await self._handle(kind, item)
        finally:
            self.ready.clear()
            unsubscribe()
            for subscription in subscriptions:
                await subscription.close()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self.lease, self._queue = None, None
            self.index, self.portfolio, self.cooling, self.cooling_rules = PriceAlertIndex(), {}, [], {}

    async def _beat(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        settings = self.runtime.settings
        since_resync = since_sweep = 0.0
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            since_resync += BEAT_SECONDS
            since_sweep += BEAT_SECONDS
            queue.put_nowait(("beat", None))
            if since_resync >= settings.alerts_resync_seconds:
                since_resync = 0.0
                queue.put_nowait(("resync", None))
            if since_sweep >= settings.alerts_portfolio_seconds:
                since_sweep = 0.0
                queue.put_nowait(("sweep", None))

    def request_sweep(self) -> None:
        """Re-check every P&L and risk alert soon, in the engine's own order (an operator, a test)."""
        if self._queue is not None:
            self._queue.put_nowait(("sweep", None))

    async def _on_alert_event(self, event: Event) -> None:
        alert = event.payload.get("alert") or {}
        if event.type == k.ALERT_CHANGED and alert.get("id") and self._queue is not None:
            self._queue.put_nowait(("changed", str(alert["id"])))

    async def _on_portfolio_event(self, event: Event) -> None:
        if event.user_id and self._queue is not None:
            self._queue.put_nowait(("portfolio", event.user_id))

    async def _handle(self, kind: str, item: Any) -> None:
        if kind == "trade":
            trade: Trade = item
            try:
                await self.on_price(trade.symbol, trade.price)
            finally:
                self.ticks_evaluated += 1
        elif kind == "changed":
            await self.refresh(item)
        elif kind == "portfolio":
            self._dirty_users.add(item)
        elif kind == "beat":
            self._rearm(self.runtime.clock.now())
            users, self._dirty_users = self._dirty_users, set()
            if users:
                await self.check_portfolio(users)
        elif kind == "resync":
            await self.resync()
        elif kind == "sweep":
            await self.check_portfolio(None)

    # -- price alerts -------------------------------------------------------------------------

    async def on_price(self, symbol: str, price: Decimal) -> int:
        """Evaluate one tick; how many alerts fired."""
        now = self.runtime.clock.now()
        self._rearm(now)
        matched = self.index.on_price(symbol, price, now.timestamp())
        if not matched:
            return 0
        unique = dict(matched)  # an id once, with its first value
        for rule_id in unique:
            rule = self.index.remove(rule_id)
            if rule is not None:
                self.cooling_rules[rule_id] = rule
        fired = await self._fire(unique, now, {"symbol": symbol, "price": price})
        for rule_id in unique:
            alert = fired.get(rule_id)
            rule = self.cooling_rules.pop(rule_id, None)
            if alert is not None and alert.recurring and rule is not None and alert.next_eligible_at is not None:
                self._cool(alert.next_eligible_at, rule)
            elif alert is None:
                await self.refresh(rule_id)  # not fired: cooling after a restart, paused meanwhile, gone
        return len(fired)

    def _cool(self, until: datetime, rule: PriceRule) -> None:
        self.cooling_rules[rule.id] = rule
        heapq.heappush(self.cooling, (until, rule.id))

    def _rearm(self, now: datetime) -> None:
        while self.cooling and self.cooling[0][0] <= now:
            _, rule_id = heapq.heappop(self.cooling)
            rule = self.cooling_rules.pop(rule_id, None)
            if rule is not None:
                self.index.add(rule)

    async def _fire(self, values: dict[str, Decimal], now: datetime, detail: dict[str, Any]) -> dict[str, Alert]:
        """Fire these alerts in one transaction fenced by the lease; the ones that did fire."""
        fired: dict[str, Alert] = {}
        async with self.runtime.db.transaction() as session:
            if self.lease is not None:
                await self.lease.assert_held(session)
            for rule_id, value in values.items():
                trigger = await fire(session, uuid.UUID(rule_id), now=now, value=value, detail=detail)
                if trigger is not None:
                    fired[rule_id] = await session.get(Alert, trigger.alert_id)  # type: ignore[assignment]
        return fired

    # -- keeping the index equal to the table ---------------------------------------------------------

    def _forget(self, alert_id: str) -> None:
        self.index.remove(alert_id)
        self.cooling_rules.pop(alert_id, None)  # its heap entry finds no rule and is skipped
        self.portfolio.pop(alert_id, None)

    def _learn(self, alert: Alert, now: datetime) -> None:
        if alert.kind != k.PRICE:
            self.portfolio[str(alert.id)] = alert
        elif alert.next_eligible_at is not None and alert.next_eligible_at > now:
            self._cool(alert.next_eligible_at, price_rule(alert))
        else:
            self.index.add(price_rule(alert))

    async def refresh(self, alert_id: str) -> None:
        """Re-read one alert: indexed again if active, forgotten otherwise."""
        async with self.runtime.db.read() as session:
            alert = await session.get(Alert, uuid.UUID(alert_id))
            session.expunge_all()  # keep the loaded rows usable after the read ends
        await session.rollback()
        self._forget(alert_id)
        if alert is not None and alert.status == AlertStatus.ACTIVE:
            self._learn(alert, self.runtime.clock.now())

    async def resync(self) -> None:
        """Make the index match the active alerts in the table (keeping price history)."""
        async with self.runtime.db.read() as session:
            rows = list((await session.scalars(select(Alert).where(Alert.status == AlertStatus.ACTIVE))).all())
            session.expunge_all()  # keep the loaded rows usable after the read ends
        await session.rollback()
        now = self.runtime.clock.now()
        active = {str(row.id): row for row in rows}
        known = set(self.portfolio) | set(self.cooling_rules) | {rid for rid in active if rid in self.index}
        for alert_id in known - set(active):
            self._forget(alert_id)
        for alert_id, row in active.items():
            if alert_id not in self.index and alert_id not in self.cooling_rules:
                self._learn(row, now)
            elif row.kind != k.PRICE:
                self.portfolio[alert_id] = row

    # -- P&L and risk alerts --------------------------------------------------------------------

    async def check_portfolio(self, user_ids: set[str] | None) -> int:
        """Evaluate the P&L and risk alerts of these users (None: everyone's); how many fired."""
        now = self.runtime.clock.now()
        fired = 0
        for alert_id, alert in list(self.portfolio.items()):
            if user_ids is not None and str(alert.user_id) not in user_ids:
                continue
            if alert.next_eligible_at is not None and alert.next_eligible_at > now:
                continue
            try:
                value = await measure(self.runtime, alert)
            except LeaseLost:
                raise
            except Exception:
                logger.exception("alert measure failed", extra={"alert_id": alert_id})
                continue
            if value is None or not holds(alert, value):
                continue
            done = await self._fire({alert_id: value}, now, {"measure": alert.condition})
            fired += len(done)
            await self.refresh(alert_id)
        return fired


# --- wiring -------------------------------------------------------------------------------------

async def start_alert_engine(runtime: Runtime) -> AlertEngine | None:
    """Compete for the ``alerts-engine`` lease (from the app lifespan, after the market)."""
    if not runtime.settings.alerts_engine_enabled:
        return None
    engine = AlertEngine(runtime, runtime.services.get("market"))
    task = asyncio.create_task(lease_manager(runtime).run_while_held(k.LEASE_NAME, engine.run), name="alert-engine")
    runtime.services[k.ENGINE_KEY] = engine
    runtime.services[k.ENGINE_KEY + "_task"] = task
    return engine


async def stop_alert_engine(runtime: Runtime) -> None:
    task: asyncio.Task[None] | None = runtime.services.pop(k.ENGINE_KEY + "_task", None)
    runtime.services.pop(k.ENGINE_KEY, None)
    if task is None:
        return
    task.cancel()
    _, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if pending:
        logger.warning("alert engine did not stop in time; leaving it behind")
