"""Backups as jobs: ``ops.backup`` (from ``POST /api/system/backup`` and the daily schedule),
which writes the backup, test-restores it, and applies retention."""

from __future__ import annotations

from typing import Any

from tradepilot.core.errors import TradePilotError
from tradepilot.jobs.registry import JobContext, PermanentJobError, job_handler
from tradepilot.jobs.scheduler import schedule
from tradepilot.ops.backup.errors import BackupKeyMissing
from tradepilot.ops.backup.setup import backup_service

BACKUP_JOB = "ops.backup"
DAILY_SCHEDULE = schedule("ops.backup.daily", "17 3 * * *", BACKUP_JOB, {"reason": "scheduled"}, max_attempts=2)


@job_handler(BACKUP_JOB, timeout_seconds=6 * 3600)
async def run_backup(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    settings = ctx.runtime.settings
    reason = str(payload.get("reason", "manual"))
    if reason == "scheduled" and not settings.backup_schedule_enabled:
        return {"skipped": "TRADEPILOT_BACKUP_SCHEDULE_ENABLED is false"}
    service = backup_service(ctx.runtime)
    await ctx.progress(0.05, "taking a snapshot")
    try:
        record = await service.create(reason=reason, job_id=str(ctx.job_id))
    except BackupKeyMissing as exc:
        raise PermanentJobError(exc.detail) from None
    result: dict[str, Any] = {"backup_id": record.id, "size": record.size, "verified": None}
    if settings.backup_verify_after_create:
        await ctx.progress(0.6, "verifying by a test restore")
        try:
            record = await service.verify(record.id)
        except TradePilotError as exc:
            result["verify_error"] = f"{exc.code}: {exc.detail}"
        result["verified"] = service.store.get(record.id).verified
    await ctx.progress(0.95, "applying retention")
    result["deleted"] = service.apply_retention()
    return result
