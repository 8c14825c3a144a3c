"""The operator's backup key: ``TRADEPILOT_BACKUP_KEYS``, kept outside the database.

A backup holds every user's data, so it is never written in clear. The keys are Fernet
keys (``tradepilot keys generate``); the first encrypts, every one decrypts (MultiFernet),
so a key can be rotated without making older backups unreadable. They are deliberately
separate from ``TRADEPILOT_ENCRYPTION_KEYS``: whoever holds a backup and the encryption keys
could read users' secrets, so the two are best stored apart.

Production refuses to back up without a key. Elsewhere (development, tests) a key is
derived from ``TRADEPILOT_SECRET_KEY`` so a fresh checkout can back up and restore at once;
such backups are readable only with the same secret key.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, MultiFernet

from tradepilot.config import ENV_PREFIX, Settings
from tradepilot.ops.backup.errors import BackupKeyMissing

DERIVATION_LABEL = b"tradepilot:backup-key:v1:"


def backup_cipher(settings: Settings) -> MultiFernet:
    """The MultiFernet that encrypts (first key) and decrypts (any key) backups."""
    keys = [key.get_secret_value() for key in settings.backup_keys]
    if not keys:
        if settings.env == "production":
            raise BackupKeyMissing(f"Set {ENV_PREFIX}BACKUP_KEYS (a Fernet key from `tradepilot keys generate`, "
                                   "stored outside the database and the backup directory) before backing up.")
        keys = [_derived_key(settings)]
    return MultiFernet([Fernet(key) for key in keys])


def _derived_key(settings: Settings) -> str:
    digest = hashlib.sha256(DERIVATION_LABEL + settings.secret_key.get_secret_value().encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()
