"""Maintenance mode: while a restore swaps the database, every replica refuses writes
(503 ``maintenance``) and stops matching.

Why not a row like the trading halt (``trading/halt.py``)? The halt is read inside each
order's transaction, which is the right place for a switch that lives *with* the data; but
a restore replaces the data, halt row included, so the maintenance flag must live outside
the database being restored:

* with Redis (``TRADEPILOT_REDIS_URL``), in the key ``<prefix>ops:maintenance`` — every
  replica reads it on each write request;
* without Redis (the embedded, one-host mode), in ``<data_dir>/maintenance.json`` — every
  process sharing the data directory (the server, ``tradepilot worker``, the CLI) sees it.

Entering and leaving are also announced on the bus (topic ``ops.maintenance``) so that each
replica stops its matching owner and live reconcilers at once and starts them again afterwards
(the matching owner reloads open orders from the restored database; the reconcilers reconcile
every live account at once). Reads keep working throughout.

If a restoring process dies in the middle, the flag stays set: ``tradepilot backup
maintenance off`` clears it after the operator has looked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tradepilot.core.events import Event
from tradepilot.core.problems import problem_response

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ops.maintenance")

TOPIC = "ops.maintenance"
SERVICE_KEY = "maintenance"
FILE_NAME = "maintenance.json"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class MaintenanceState:
    reason: str
    since: datetime


class Maintenance:
    """The switch of one process; the state itself is shared (Redis key or file)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._local: MaintenanceState | None = None  # set by this process: effective at once
        self._stopped_matching = False
        self._stopped_alerts = False
        self._stopped_notifications = False
        self._stopped_reconciliation = False

    @property
    def _file(self) -> Path:
        return Path(self.runtime.settings.data_dir) / FILE_NAME

    @property
    def _key(self) -> str:
        return self.runtime.key("ops", "maintenance")

    async def current(self) -> MaintenanceState | None:
        if self._local is not None:
            return self._local
        raw = await self._read_shared()
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            return MaintenanceState(reason=str(body["reason"]), since=datetime.fromisoformat(body["since"]))
        except (ValueError, KeyError, TypeError):
            return MaintenanceState(reason="maintenance", since=self.runtime.clock.now())

    async def enter(self, reason: str) -> MaintenanceState:
        state = MaintenanceState(reason=reason, since=self.runtime.clock.now())
        self._local = state
        await self._write_shared(json.dumps({"reason": reason, "since": state.since.isoformat()}).encode())
        await self._announce("entered", reason)
        await self.pause_local_writers()
        logger.warning("maintenance mode entered", extra={"reason": reason})
        return state

    async def leave(self) -> None:
        await self._write_shared(None)
        self._local = None
        await self._announce("left", None)
        await self.resume_local_writers()
        logger.warning("maintenance mode left")

    # -- what each replica does ------------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        """Another replica (or this one) entered or left maintenance. The shared flag, not the
        event, decides: events delivered late or out of order cannot leave matching stopped."""
        if await self.current() is not None:
            await self.pause_local_writers()
        else:
            await self.resume_local_writers()

    async def pause_local_writers(self) -> None:
        """Stop this process's writers that no request drives: the matching owner (fills from the
        market), the live reconcilers (they must not write into a database being replaced), the
        alert engine (triggers from trades) and the notification consumer (and the Telegram
        poller). Notification delivery jobs wait by themselves (``notifications.pause``)."""
        from tradepilot.trading.live.reconciliation_owner import stop_reconciliation, supervisor
        from tradepilot.trading.matching_owner import SERVICE_KEY as MATCHING
        from tradepilot.trading.matching_owner import stop_matching

        if self.runtime.services.get(MATCHING) is not None:
            await stop_matching(self.runtime)
            self._stopped_matching = True
        if supervisor(self.runtime) is not None:
            await stop_reconciliation(self.runtime)
            self._stopped_reconciliation = True
        await self._pause_notifications()

    async def resume_local_writers(self) -> None:
        """The reconcilers restart too: each takes its accounts' leases again and reconciles at
        once, which is what lets live orders through after a restore (``trading/live/post_restore``)."""
        from tradepilot.trading.live.reconciliation_owner import start_reconciliation
        from tradepilot.trading.matching_owner import start_matching

        if self._stopped_matching:
            self._stopped_matching = False
            await start_matching(self.runtime)
        if self._stopped_reconciliation:
            self._stopped_reconciliation = False
            await start_reconciliation(self.runtime)
        await self._resume_notifications()

    async def _pause_notifications(self) -> None:
        from tradepilot.alerts.constants import ENGINE_KEY
        from tradepilot.alerts.engine import stop_alert_engine
        from tradepilot.notifications.setup import pause_notifications

        if self.runtime.services.get(ENGINE_KEY) is not None:
            await stop_alert_engine(self.runtime)
            self._stopped_alerts = True
        if await pause_notifications(self.runtime):
            self._stopped_notifications = True

    async def _resume_notifications(self) -> None:
        from tradepilot.alerts.engine import start_alert_engine
        from tradepilot.notifications.setup import resume_notifications

        if self._stopped_notifications:
            self._stopped_notifications = False
            await resume_notifications(self.runtime)
        if self._stopped_alerts:  # after the consumer: the triggers it writes become notifications
            self._stopped_alerts = False
            await start_alert_engine(self.runtime)

    # -- the shared flag -------------------------------------------------------------------

    async def _read_shared(self) -> bytes | None:
        if self.runtime.redis is not None:
            return await self.runtime.redis.get(self._key)  # type: ignore[no-any-return]
        try:
            return self._file.read_bytes()
        except FileNotFoundError:
            return None

    async def _write_shared(self, value: bytes | None) -> None:
        if self.runtime.redis is not None:
            if value is None:
                await self.runtime.redis.delete(self._key)
            else:
                await self.runtime.redis.set(self._key, value)
            return
        if value is None:
            self._file.unlink(missing_ok=True)
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._file.with_name(FILE_NAME + ".partial")
        partial.write_bytes(value)
        partial.replace(self._file)

    async def _announce(self, state: str, reason: str | None) -> None:
        try:
            await self.runtime.bus.publish(Event(topic=TOPIC, type=f"maintenance.{state}",
                                                 payload={"state": state, "reason": reason}))
        except Exception:  # the shared flag is the truth; the event only speeds replicas up
            logger.warning("could not announce maintenance %s on the bus", state, exc_info=True)


def get_maintenance(runtime: Runtime) -> Maintenance:
    existing = runtime.services.get(SERVICE_KEY)
    if existing is None:
        existing = runtime.services[SERVICE_KEY] = Maintenance(runtime)
    return existing  # type: ignore[no-any-return]


class MaintenanceMiddleware:
    """Refuses every write request (anything but GET/HEAD/OPTIONS) while maintenance is on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            state = await self._state(scope)
            if state is not None:
                response = problem_response(
                    503, "maintenance", f"The platform is in maintenance ({state.reason}); writes are refused "
                    "until it ends. Reads keep working.", title="Maintenance",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, extra={"reason": state.reason})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _state(scope: Scope) -> MaintenanceState | None:
        app: Any = scope.get("app")
        runtime = getattr(getattr(app, "state", None), "runtime", None)
        maintenance = runtime.services.get(SERVICE_KEY) if runtime is not None else None
        if maintenance is None:
            return None
        try:
            return await maintenance.current()  # type: ignore[no-any-return]
        except Exception:  # Redis down: let the request through, the restore holds its own locks
            logger.warning("could not read the maintenance flag", exc_info=True)
            return None
