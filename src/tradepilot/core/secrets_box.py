"""Secrets encrypted at rest: MultiFernet over ``TRADEPILOT_ENCRYPTION_KEYS``, rotatable.

The first key encrypts; every configured key decrypts, so a new key can be rolled out
before anything is written with it. ``tradepilot keys rotate`` re-encrypts every value of
every registered column with the primary key, after which old keys can be retired.

A domain whose table holds an encrypted value registers the column next to its model
(``register_encrypted_column(User.totp_secret_encrypted)``), so the rotation finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from tradepilot.config import Settings
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.secrets")


class SecretUnreadable(Exception):
    """No configured key decrypts this value (a key was removed too early, or the data is corrupt)."""


class SecretBox:
    """Encrypts and decrypts short secrets (str in, str out); the first key is the primary."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("a SecretBox needs at least one key")
        self._fernets = [Fernet(k) for k in keys]
        self._primary = self._fernets[0]
        self._all = MultiFernet(self._fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls([key.get_secret_value() for key in settings.encryption_keys])

    def encrypt(self, plaintext: str) -> str:
        return self._primary.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._all.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable("no configured encryption key decrypts this value") from None

    def is_current(self, token: str) -> bool:
        """Encrypted with the primary key (nothing to rotate)."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same plaintext, encrypted with the primary key."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable("no configured encryption key decrypts this value") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def secret_box(runtime: Runtime) -> SecretBox:
    """The process's box (``runtime.services["secrets_box"]``), made on first use."""
    box = runtime.services.get("secrets_box")
    if box is None:
        box = runtime.services["secrets_box"] = SecretBox.from_settings(runtime.settings)
    return box  # type: ignore[no-any-return]


# --- the registry of encrypted columns, and their rotation --------------------------------

ENCRYPTED_COLUMNS: dict[str, Column[Any]] = {}


def register_encrypted_column(attribute: Any) -> None:
    """Declare a mapped attribute (``Model.column``) as holding SecretBox ciphertext."""
    column: Column[Any] = attribute.property.columns[0]
    if len(column.table.primary_key.columns) != 1:
        raise ValueError(f"{column.table.name}: rotation needs a single-column primary key")
    ENCRYPTED_COLUMNS[f"{column.table.name}.{column.name}"] = column


@dataclass
class RotationReport:
    column: str
    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)  # primary keys of values no key decrypts


async def rotate_column(engine: AsyncEngine, box: SecretBox, column: Column[Any], *,
                        batch_size: int = 500) -> RotationReport:
    """Re-encrypt every value of ``column`` with the primary key, one committed batch at a time.

    Each row is rewritten only if it still holds the ciphertext that was read, so a value
    changed meanwhile (a user re-enrolling) is never overwritten with a stale one.
    """
    table = column.table
    pk = next(iter(table.primary_key.columns))
    report = RotationReport(column=f"{table.name}.{column.name}")
    last: Any = None
    while True:
        async with engine.begin() as conn:
            query = select(pk, column).where(column.is_not(None)).order_by(pk).limit(batch_size)
            if last is not None:
                query = query.where(pk > last)
            rows = (await conn.execute(query)).all()
            for row_id, token in rows:
                if box.is_current(token):
                    report.current += 1
                    continue
                try:
                    fresh = box.rotate(token)
                except SecretUnreadable:
                    report.unreadable.append(str(row_id))
                    continue
                done = await conn.execute(update(table).where(pk == row_id, column == token)
                                          .values({column.name: fresh}))
                report.rotated += done.rowcount
        if len(rows) < batch_size:
            return report
        last = rows[-1][0]


async def rotate_all(engine: AsyncEngine, box: SecretBox) -> list[RotationReport]:
    """Rotate every registered column (import ``tradepilot.models_registry`` first)."""
    reports = []
    for name, column in sorted(ENCRYPTED_COLUMNS.items()):
        report = await rotate_column(engine, box, column)
        logger.info("encrypted column rotated", extra={"column": name, "rotated": report.rotated,
                                                        "current": report.current,
                                                        "unreadable": len(report.unreadable)})
        reports.append(report)
    return reports
