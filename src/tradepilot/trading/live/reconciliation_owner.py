"""Who reconciles a live account, and when: one process per account, by lease (DESIGN §1.7).

Every process runs a :class:`ReconciliationSupervisor` (unless ``live_reconcile_enabled`` is
off). It keeps one task per active live account competing for the lease
``live-reconcile:<account id>``; the process that gets it runs an :class:`AccountReconciler`,
which reconciles at once (``startup``: the process just took the account over, after a
restart, a crash or another replica's exit), then every ``live_reconcile_interval_seconds`` by
the runtime's clock (``periodic``; the loop looks at the clock every
``live_reconcile_poll_seconds``, so a test clock drives it), and whenever asked (``manual``).
Where the exchange has a user-data stream, the holder also follows it (``live/user_stream.py``):
pushed order updates are applied between runs, and each (re)subscription asks for a full run
(``reconnect``) to find what the stream missed while it was down.
A manual request reaching a process that does not hold the lease is passed on over the bus to
the one that does. Runs of one account never overlap, and every write is fenced by the lease.

New live accounts are watched at once by the process that created them (``watch``) and by the
others at their next scan (every interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from tradepilot.core.events import Event
from tradepilot.core.lease import Lease, LeaseLost, lease_manager
from tradepilot.trading.live.answers import VenueOrder
from tradepilot.trading.live.emulation import Emulator
from tradepilot.trading.live.reconciliation import Reconciliation
from tradepilot.trading.live.reconciliation_models import ReconciliationRun, RunTrigger
from tradepilot.trading.live.user_stream import UserStream
from tradepilot.trading.models import AccountKind, AccountStatus, TradingAccount

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.trading.live.reconciliation")

SERVICE_KEY = "live_reconciliation"
REQUEST_TOPIC = "live.reconcile_requested"  # a manual run asked of whichever process holds the lease
STOP_TIMEOUT = 15.0


def lease_name(account_id: uuid.UUID) -> str:
    return f"live-reconcile:{account_id}"


class AccountReconciler:
    """One account's reconciliation in the process holding its lease."""

    def __init__(self, runtime: Runtime, account_id: uuid.UUID) -> None:
        self.runtime = runtime
        self.account_id = account_id
        self.lease: Lease | None = None
        self.wake = asyncio.Event()  # a manual run passed on from another process
        self._running = asyncio.Lock()  # runs of one account never overlap
        self._missed = False  # the user-data stream was down: the next woken run is a full resync

    @property
    def holds(self) -> bool:
        return self.lease is not None and self.lease.held

    async def run(self, lease: Lease) -> None:
        settings, clock = self.runtime.settings, self.runtime.clock
        interval = timedelta(seconds=settings.live_reconcile_interval_seconds)
        emulation = timedelta(seconds=settings.live_emulation_interval_seconds)
        self.lease = lease
        stream = asyncio.create_task(UserStream(self.runtime, self.account_id, self._apply_pushed,
                                                self._resubscribed).run(),
                                     name=f"live-user-stream:{self.account_id}") \
            if settings.live_user_stream_enabled else None
        try:
            await self._safely(RunTrigger.STARTUP)
            due = clock.now() + interval
            emulate_due = clock.now()
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.live_reconcile_poll_seconds):
                        await self.wake.wait()
                if self.wake.is_set():
                    self.wake.clear()
                    trigger, self._missed = (RunTrigger.RECONNECT if self._missed else RunTrigger.MANUAL), False
                    await self._safely(trigger)
                elif clock.now() >= due:
                    await self._safely(RunTrigger.PERIODIC)
                else:
                    if clock.now() >= emulate_due:  # the account's emulated orders (live/emulation.py)
                        await self._emulate()
                        emulate_due = clock.now() + emulation
                    continue
                due = clock.now() + interval
        finally:
            if stream is not None:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await stream
            self.lease = None

    async def reconcile(self, trigger: str) -> ReconciliationRun:
        """One run now (after any run in progress); LeaseLost if this process does not hold the account."""
        async with self._running:
            lease = self.lease
            if lease is None or not lease.held:
                raise LeaseLost(f"{lease_name(self.account_id)} is not held here")
            return await Reconciliation(self.runtime, self.account_id, lease).run(trigger)

    def _resubscribed(self) -> None:
        """The user-data stream (re)subscribed: a full run finds what it missed while it was down."""
        self._missed = True
        self.wake.set()

    async def _apply_pushed(self, views: list[VenueOrder]) -> None:
        """Order updates from the user-data stream, applied between runs (never during one)."""
        async with self._running:
            lease = self.lease
            if lease is None or not lease.held:
                raise LeaseLost(f"{lease_name(self.account_id)} is not held here")
            await Reconciliation(self.runtime, self.account_id, lease).apply_updates(views)

    async def _emulate(self) -> None:
        """One tick of the emulated orders, never during a run; failures wait for the next tick."""
        async with self._running:
            lease = self.lease
            if lease is None or not lease.held:
                raise LeaseLost(f"{lease_name(self.account_id)} is not held here")
            try:
                await Emulator(self.runtime, self.account_id, lease).tick()
            except LeaseLost:
                raise
            except Exception:  # the exchange unreachable, a bug: logged, the next tick tries again
                logger.warning("live order emulation tick failed", exc_info=True,
                               extra={"account_id": str(self.account_id)})

    async def _safely(self, trigger: str) -> None:
        try:
            await self.reconcile(trigger)
        except LeaseLost:
            raise
        except Exception:  # a bug or the database: logged, and the next run tries again
            logger.exception("live reconciliation run failed", extra={"account_id": str(self.account_id)})


class ReconciliationSupervisor:
    """Per process: a lease-competing task per active live account (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.reconcilers: dict[uuid.UUID, AccountReconciler] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    def holder_of(self, account_id: uuid.UUID) -> AccountReconciler | None:
        """This process's reconciler of the account, if it holds the account's lease."""
        reconciler = self.reconcilers.get(account_id)
        return reconciler if reconciler is not None and reconciler.holds else None

    async def start(self) -> None:
        self._subscription = await self.runtime.bus.subscribe(REQUEST_TOPIC, self._on_request)
        self._loop = asyncio.create_task(self._scan_loop(), name="live-reconciliation-scan")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                logger.warning("live reconciliation did not stop in time; leaving it behind")
        self._tasks.clear()
        self.reconcilers.clear()
        await self._subscription.close()

    def watch(self, account_id: uuid.UUID) -> None:
        """Compete for the account's lease (a no-op when already competing)."""
        task = self._tasks.get(account_id)
        if task is not None and not task.done():
            return
        reconciler = self.reconcilers[account_id] = AccountReconciler(self.runtime, account_id)
        self._tasks[account_id] = asyncio.create_task(
            lease_manager(self.runtime).run_while_held(lease_name(account_id), reconciler.run),
            name=f"live-reconcile-{account_id}",
            context=contextvars.Context())  # not the request's that created the account (its id in every log)

    def unwatch(self, account_id: uuid.UUID) -> None:
        task = self._tasks.pop(account_id, None)
        self.reconcilers.pop(account_id, None)
        if task is not None:
            task.cancel()

    async def request(self, account_id: uuid.UUID) -> ReconciliationRun | None:
        """A manual run: here and now if this process holds the account (the run), else passed on
        to the holder over the bus (None)."""
        reconciler = self.holder_of(account_id)
        if reconciler is not None:
            try:
                return await reconciler.reconcile(RunTrigger.MANUAL)
            except LeaseLost:
                pass  # lost it just now: the new holder gets the request
        self.watch(account_id)
        await self.runtime.bus.publish(Event(topic=REQUEST_TOPIC, type=REQUEST_TOPIC,
                                             payload={"account_id": str(account_id)}))
        return None

    async def _on_request(self, event: Event) -> None:
        try:
            reconciler = self.holder_of(uuid.UUID(str(event.payload.get("account_id"))))
        except ValueError:
            return
        if reconciler is not None:
            reconciler.wake.set()

    async def _scan_loop(self) -> None:
        settings, clock = self.runtime.settings, self.runtime.clock
        due = clock.now()
        while True:
            if clock.now() >= due:
                try:
                    await self.scan()
                except Exception:
                    logger.exception("live reconciliation: listing live accounts failed")
                due = clock.now() + timedelta(seconds=settings.live_reconcile_interval_seconds)
            await asyncio.sleep(settings.live_reconcile_poll_seconds)

    async def scan(self) -> None:
        """Compete for every active live account; stop competing for closed or deleted ones."""
        async with self.runtime.db.read() as session:
            active = set(await session.scalars(select(TradingAccount.id).where(
                TradingAccount.kind == AccountKind.LIVE, TradingAccount.status == AccountStatus.ACTIVE)))
        for account_id in active:
            self.watch(account_id)
        for account_id in set(self._tasks) - active:
            self.unwatch(account_id)


def supervisor(runtime: Runtime) -> ReconciliationSupervisor | None:
    return runtime.services.get(SERVICE_KEY)  # type: ignore[no-any-return]


async def start_reconciliation(runtime: Runtime) -> ReconciliationSupervisor | None:
    """From the app lifespan, after the order service (reconciliation records through it)."""
    if not runtime.settings.live_reconcile_enabled:
        return None
    service = ReconciliationSupervisor(runtime)
    await service.start()
    runtime.services[SERVICE_KEY] = service
    return service


async def stop_reconciliation(runtime: Runtime) -> None:
    service: ReconciliationSupervisor | None = runtime.services.pop(SERVICE_KEY, None)
    if service is not None:
        await service.stop()
