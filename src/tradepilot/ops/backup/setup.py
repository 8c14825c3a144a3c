"""Wires backup and maintenance into a process (the server's lifespan calls ``start_backup``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradepilot.ops.backup.maintenance import TOPIC, get_maintenance
from tradepilot.ops.backup.service import BackupService

if TYPE_CHECKING:
    from tradepilot.ops.backup.restore_runner import RestoreRunner
    from tradepilot.runtime import Runtime

SERVICE_KEY = "backup"
RESTORE_KEY = "restore"


def backup_service(runtime: Runtime) -> BackupService:
    service = runtime.services.get(SERVICE_KEY)
    if service is None:
        service = runtime.services[SERVICE_KEY] = BackupService(runtime.settings, runtime.clock,
                                                                database_url=runtime.db.url)
    return service  # type: ignore[no-any-return]


def restore_runner(runtime: Runtime) -> RestoreRunner:
    from tradepilot.ops.backup.restore_runner import RestoreRunner

    runner = runtime.services.get(RESTORE_KEY)
    if runner is None:
        runner = runtime.services[RESTORE_KEY] = RestoreRunner(runtime, backup_service(runtime))
    return runner  # type: ignore[no-any-return]


async def start_backup(runtime: Runtime) -> None:
    """Maintenance mode is checked on every write request; this replica follows the others'."""
    maintenance = get_maintenance(runtime)
    backup_service(runtime)
    await runtime.bus.subscribe(TOPIC, maintenance.on_event)
