"""The errors of backup and restore, each with its HTTP status and a stable ``code``.

They are ``core.errors`` exceptions, so the API answers them as problem+json and the CLI
prints their ``detail``; none of them leaves the running data changed.
"""

from __future__ import annotations

from tradepilot.core.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable


class BackupNotFound(NotFound):
    code = "backup_not_found"


class BackupKeyMissing(Conflict):
    """Production without ``TRADEPILOT_BACKUP_KEYS``: an unencrypted backup is never written."""

    code = "backup_key_missing"


class BackupCorrupted(Unprocessable):
    """Bad checksum, truncated, tampered with, or members missing."""

    code = "backup_corrupted"


class BackupUndecryptable(Unprocessable):
    """No configured backup key decrypts the archive (wrong or rotated-out key)."""

    code = "backup_undecryptable"


class BackupIncompatible(Conflict):
    """Another database dialect, a newer schema than this code knows, or a newer format."""

    code = "backup_incompatible"


class BackupFailed(ServiceUnavailable):
    """A tool or the database failed while backing up or restoring (pg_dump missing, disk full…)."""

    code = "backup_failed"


class RestoreInProgress(Conflict):
    code = "restore_in_progress"


class MaintenanceActive(ServiceUnavailable):
    code = "maintenance"
