"""``/api/system/backup`` and ``/api/system/restore``: administrators only (with 2FA); taking a
backup and restoring one also need the password re-entered within five minutes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, status
from fastapi.responses import FileResponse
from pydantic import Field

from tradepilot.core.deps import ClientIP, DbSession, RuntimeDep
from tradepilot.core.ownership import ownership_dependency
from tradepilot.core.routing import api_router
from tradepilot.core.schemas import Schema
from tradepilot.identity.deps import AdminUser, get_admin
from tradepilot.identity.reauth import RecentlyReauthenticatedAdmin
from tradepilot.identity.security_events import SecurityEventKind, record_security_event
from tradepilot.ops.backup.jobs import BACKUP_JOB
from tradepilot.ops.backup.keys import backup_cipher
from tradepilot.ops.backup.restore_runner import RestoreStatus
from tradepilot.ops.backup.setup import backup_service, restore_runner
from tradepilot.ops.backup.store import ID_PATTERN, BackupRecord

router = api_router(prefix="/api/system", tags=["system"], dependencies=[Depends(get_admin)])


class BackupAccepted(Schema):
    job_id: uuid.UUID
    status_url: str


class BackupOut(Schema):
    id: str
    created_at: datetime
    size: int
    verified: bool | None
    verified_at: datetime | None
    verify_error: str | None
    reason: str
    manifest: dict[str, Any] = Field(description="dialect, alembic_revision, app_version, tables, rows, sha256")

    @classmethod
    def of(cls, record: BackupRecord) -> BackupOut:
        return cls(id=record.id, created_at=record.created_at, size=record.size, verified=record.verified,
                   verified_at=record.verified_at, verify_error=record.verify_error, reason=record.reason,
                   manifest={"dialect": record.dialect, "alembic_revision": record.alembic_revision,
                             "app_version": record.app_version, "tables": record.tables, "rows": record.rows,
                             "sha256": record.sha256})


class BackupList(Schema):
    items: list[BackupOut]
    next_cursor: str | None = None


class RestoreRequest(Schema):
    backup_id: str = Field(pattern=ID_PATTERN.pattern, description="An id from GET /api/system/backup")


class RestoreOut(Schema):
    id: str
    backup_id: str
    state: str
    started_at: datetime
    finished_at: datetime | None
    error_code: str | None
    error: str | None
    live_accounts: dict[str, dict[str, Any]] | None = Field(
        None, description="Per live account id: its first reconciliation after the restore — state reconciled, "
                          "failed (error) or pending; live orders on it are refused (503 reconciliation_pending) "
                          "until it reconciled")

    @classmethod
    def of(cls, value: RestoreStatus) -> RestoreOut:
        return cls(id=value.id, backup_id=value.backup_id, state=value.state, started_at=value.started_at,
                   finished_at=value.finished_at, error_code=value.error_code, error=value.error,
                   live_accounts=value.live_accounts)


@ownership_dependency
async def existing_backup(backup_id: str, admin: AdminUser, runtime: RuntimeDep) -> BackupRecord:
    """Backups belong to the platform: any administrator may read one; others never get here."""
    return backup_service(runtime).store.get(backup_id)


ExistingBackup = Annotated[BackupRecord, Depends(existing_backup)]


@router.post("/backup", status_code=status.HTTP_202_ACCEPTED, response_model=BackupAccepted,
             summary="Take a full backup (a job)")
async def post_backup(admin: RecentlyReauthenticatedAdmin, db: DbSession, runtime: RuntimeDep,
                      ip: ClientIP) -> BackupAccepted:
    """Snapshot the database into an encrypted archive, then test-restore it. Follow the job at
    `status_url`; its result names the backup. 409 `backup_key_missing` in production without
    TRADEPILOT_BACKUP_KEYS."""
    backup_cipher(runtime.settings)  # refuse now rather than in the job
    job = await runtime.services["jobs"].enqueue(db, kind=BACKUP_JOB, payload={"reason": "manual"},
                                                 user_id=admin.id, max_attempts=2)
    record_security_event(db, clock=runtime.clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=admin.id, ip=ip,
                          details={"action": "backup_requested", "job_id": str(job.id)})
    await db.commit()
    return BackupAccepted(job_id=job.id, status_url=f"/api/jobs/{job.id}")


@router.get("/backup", response_model=BackupList, summary="List backups, newest first")
async def list_backups(admin: AdminUser, runtime: RuntimeDep) -> BackupList:
    return BackupList(items=[BackupOut.of(r) for r in backup_service(runtime).store.list()])


@router.get("/backup/{backup_id}", summary="Download a backup (the encrypted archive)",
            response_class=FileResponse, responses={200: {"content": {"application/octet-stream": {}}}})
async def download_backup(record: ExistingBackup, runtime: RuntimeDep) -> FileResponse:
    path = backup_service(runtime).store.archive_path(record.id)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name,
                        headers={"Cache-Control": "no-store", "X-Backup-SHA256": record.sha256})


@router.post("/restore", status_code=status.HTTP_202_ACCEPTED, response_model=RestoreOut,
             summary="Restore a backup (replaces all data)")
async def post_restore(body: RestoreRequest, admin: RecentlyReauthenticatedAdmin, runtime: RuntimeDep,
                       ip: ClientIP) -> RestoreOut:
    """Checked at once — a missing (404 `backup_not_found`), corrupted (422 `backup_corrupted`),
    undecryptable (422 `backup_undecryptable`) or incompatible (409 `backup_incompatible`) backup
    is refused and nothing changes. Then, in the background: test-restore into a scratch
    database, verify against the manifest, migrate, and swap in under maintenance mode (writes
    answer 503 `maintenance` on every replica meanwhile). Follow it with GET /api/system/restore."""
    started = await restore_runner(runtime).start(body.backup_id, admin_id=admin.id, ip=ip)
    return RestoreOut.of(started)


@router.get("/restore", response_model=RestoreOut | None, summary="The latest restore's state")
async def get_restore(admin: AdminUser, runtime: RuntimeDep) -> RestoreOut | None:
    current = restore_runner(runtime).status()
    return RestoreOut.of(current) if current is not None else None
