"""A restore started from the API: checked at once, run in the background, its state in
``<backup_dir>/restore-status.json`` (outside the database it replaces, so the state
survives the swap and every replica sharing the backup directory sees it).

The restore itself is ``BackupService.restore``; this module adds the maintenance window
around the swap, the audit record, and refuses a second restore while one runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradepilot.core.errors import TradePilotError
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.ops.backup.errors import RestoreInProgress
from tradepilot.ops.backup.maintenance import get_maintenance
from tradepilot.ops.backup.service import BackupService
from tradepilot.trading.live.post_restore import (
    WAIT_SECONDS,
    PostRestoreMark,
    wait_for_reconciliation,
)

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ops.restore")

STATUS_FILE = "restore-status.json"
STALE_AFTER = timedelta(hours=6)  # a "running" status older than this is a crashed restore


@dataclass(frozen=True)
class RestoreStatus:
    id: str
    backup_id: str
    state: str  # running | succeeded | failed
    started_at: datetime
    requested_by: str | None
    finished_at: datetime | None = None
    error_code: str | None = None
    error: str | None = None
    live_accounts: dict[str, dict[str, Any]] | None = None  # per account: the post-restore reconciliation

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        for key in ("started_at", "finished_at"):
            body[key] = body[key].isoformat() if body[key] else None
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RestoreStatus:
        body = dict(body)
        body["started_at"] = datetime.fromisoformat(body["started_at"])
        body["finished_at"] = datetime.fromisoformat(body["finished_at"]) if body.get("finished_at") else None
        return cls(**body)


@asynccontextmanager
async def maintenance_window(runtime: Runtime, reason: str) -> AsyncIterator[None]:
    """Writes refused on every replica, matching and live reconcilers stopped, this process's
    connections closed before and after the swap (none of them may keep a view of the replaced
    database). After a swap, live orders wait for their account's first reconciliation: the
    mark is set before maintenance ends, so no live order slips in between."""
    maintenance = get_maintenance(runtime)
    await maintenance.enter(reason)
    try:
        await runtime.db.dispose()
        yield
        await runtime.db.dispose()
        if runtime.settings.live_reconcile_enabled:
            await PostRestoreMark(runtime).set(runtime.clock.now())
    finally:
        await maintenance.leave()


class RestoreRunner:
    def __init__(self, runtime: Runtime, service: BackupService) -> None:
        self.runtime = runtime
        self.service = service
        self.task: asyncio.Task[RestoreStatus] | None = None
        self.reconcile_timeout = WAIT_SECONDS  # for the live accounts' first post-restore runs

    @property
    def _status_path(self) -> Path:
        return self.service.store.ensure() / STATUS_FILE

    def status(self) -> RestoreStatus | None:
        try:
            return RestoreStatus.from_json(json.loads(self._status_path.read_bytes()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    async def start(self, backup_id: str, *, admin_id: uuid.UUID, ip: str | None) -> RestoreStatus:
        """Refuse at once what can be refused (missing, corrupted, incompatible); run the rest."""
        current = self.status()
        now = self.runtime.clock.now()
        if (self.task is not None and not self.task.done()) or (
                current is not None and current.state == "running" and now - current.started_at < STALE_AFTER):
            raise RestoreInProgress("A restore is already running.", extra={"restore_id": current.id if current else None})
        await self.service.check_restorable(backup_id)
        status = RestoreStatus(id=str(uuid.uuid4()), backup_id=backup_id, state="running", started_at=now,
                               requested_by=str(admin_id))
        self._save(status)
        self.task = asyncio.create_task(self._run(status, admin_id=admin_id, ip=ip), name=f"restore-{backup_id}")
        return status

    async def _run(self, status: RestoreStatus, *, admin_id: uuid.UUID, ip: str | None) -> RestoreStatus:
        try:
            await self.service.restore(status.backup_id,
                                       around_swap=lambda: maintenance_window(self.runtime, "restoring a backup"))
            live = await wait_for_reconciliation(self.runtime, timeout=self.reconcile_timeout)
            status = replace(status, state="succeeded", finished_at=self.runtime.clock.now(), live_accounts=live)
            await self._audit(status, admin_id=admin_id, ip=ip)
        except TradePilotError as exc:
            status = replace(status, state="failed", finished_at=self.runtime.clock.now(), error_code=exc.code,
                             error=exc.detail)
        except Exception as exc:  # logged with its trace; the status says only that it failed
            logger.exception("restore failed")
            status = replace(status, state="failed", finished_at=self.runtime.clock.now(), error_code="restore_failed",
                             error=type(exc).__name__)
        self._save(status)
        return status

    async def _audit(self, status: RestoreStatus, *, admin_id: uuid.UUID, ip: str | None) -> None:
        """Recorded in the restored database (the admin may not exist in it: then without user)."""
        from tradepilot.identity.models import User

        try:
            async with self.runtime.db.transaction() as session:
                user_id = admin_id if await session.get(User, admin_id) is not None else None
                record_security_event(session, clock=self.runtime.clock, kind=SecurityEventKind.ADMIN_ACTION,
                                      user_id=user_id, ip=ip,
                                      details={"action": "backup_restored", "admin_id": str(admin_id),
                                               "backup_id": status.backup_id, "restore_id": status.id,
                                               "live_accounts": status.live_accounts})
        except Exception:
            logger.exception("could not record the restore in the security log")

    def _save(self, status: RestoreStatus) -> None:
        partial = self._status_path.with_name(STATUS_FILE + ".partial")
        partial.write_text(json.dumps(status.to_json(), indent=2))
        partial.replace(self._status_path)
