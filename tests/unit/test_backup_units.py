"""Backup building blocks without a database: encrypted framing, configuration without
secrets, the export's coverage of user tables, retention."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet, MultiFernet
from pydantic import SecretStr
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, Uuid

from tests.support import make_settings
from tradepilot.models_registry import metadata
from tradepilot.ops.backup import crypto_stream
from tradepilot.ops.backup.config_backup import config_json, effective_config
from tradepilot.ops.backup.crypto_stream import DecryptingReader, EncryptingWriter
from tradepilot.ops.backup.errors import BackupCorrupted, BackupKeyMissing, BackupUndecryptable
from tradepilot.ops.backup.export import uncovered_tables
from tradepilot.ops.backup.keys import backup_cipher
from tradepilot.ops.backup.manifest import Manifest
from tradepilot.ops.backup.store import BackupRecord, BackupStore

CIPHER = MultiFernet([Fernet(Fernet.generate_key())])


def _encrypt(data: bytes) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, CIPHER)
    writer.write(data)
    writer.close()
    return out.getvalue()


def _frames(blob: bytes) -> list[bytes]:
    frames, pos = [], len(crypto_stream.MAGIC)
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        frames.append(blob[pos:pos + 4 + length])
        pos += 4 + length
    return frames


def _decrypt(blob: bytes, cipher: MultiFernet = CIPHER) -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), cipher)
    data = reader.read()
    reader.drain()
    return data


def test_large_data_round_trips_in_chunks() -> None:
    data = bytes(range(256)) * (3 * crypto_stream.CHUNK_SIZE // 256 + 7)
    blob = _encrypt(data)
    assert len(_frames(blob)) == 1 + 4  # the key check, three full chunks, the last one
    assert _decrypt(blob) == data


@pytest.mark.parametrize("damage", ["drop_last_frame", "swap_frames", "duplicate_frame", "cut_mid_frame"])
def test_reordered_dropped_or_cut_frames_are_refused(damage: str) -> None:
    blob = _encrypt(b"x" * (2 * crypto_stream.CHUNK_SIZE + 10))
    magic, frames = crypto_stream.MAGIC, _frames(blob)
    if damage == "drop_last_frame":
        frames = frames[:-1]
    elif damage == "swap_frames":
        frames[1], frames[2] = frames[2], frames[1]
    elif damage == "duplicate_frame":
        frames.insert(2, frames[1])
    else:
        frames[-1] = frames[-1][:-10]
    with pytest.raises(BackupCorrupted):
        _decrypt(magic + b"".join(frames))


def test_a_wrong_key_is_told_apart_from_damage() -> None:
    blob = _encrypt(b"data")
    with pytest.raises(BackupUndecryptable):
        _decrypt(blob, MultiFernet([Fernet(Fernet.generate_key())]))
    with pytest.raises(BackupCorrupted):
        _decrypt(b"NOTABACKUP" + blob[10:])


def test_production_refuses_to_back_up_without_a_key() -> None:
    prod = make_settings("sqlite+aiosqlite:///x.db").model_copy(update={"env": "production"})
    with pytest.raises(BackupKeyMissing):
        backup_cipher(prod)
    key = Fernet.generate_key().decode()
    assert backup_cipher(prod.model_copy(update={"backup_keys": [SecretStr(key)]})).decrypt(
        Fernet(key).encrypt(b"ok")) == b"ok"


def test_the_configuration_backup_holds_no_secret() -> None:
    secrets = {"secret_key": "s3cret-key-value-0123456789abcdef0123",
               "smtp_password": "smtp-pass-value", "metrics_token": "metrics-token-value",
               "encryption_keys": Fernet.generate_key().decode(), "backup_keys": Fernet.generate_key().decode()}
    settings = make_settings("postgresql+asyncpg://app:db-pass-value@db.example:5432/tradepilot",
                             redis_url="redis://:redis-pass-value@cache:6379/0", smtp_host="mail.example", **secrets)
    text = config_json(settings).decode()
    for value in [*secrets.values(), "db-pass-value", "redis-pass-value"]:
        assert value not in text
    config = effective_config(settings)
    for name in ("SECRET_KEY", "SMTP_PASSWORD", "METRICS_TOKEN", "ENCRYPTION_KEYS", "BACKUP_KEYS"):
        assert f"TRADEPILOT_{name}" not in config
    assert config["TRADEPILOT_DATABASE_URL"] == "postgresql+asyncpg://app@db.example:5432/tradepilot"
    assert config["TRADEPILOT_SMTP_HOST"] == "mail.example"  # the rest is there


def test_every_user_table_is_exported_or_excluded_on_purpose() -> None:
    assert uncovered_tables(metadata) == set()
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("future_user_table", extended, Column("id", Integer, primary_key=True), Column("user_id", Uuid))
    Table("alert_hit", extended, Column("id", Integer, primary_key=True),
          Column("account_id", Uuid, ForeignKey("trading_account.id")))
    assert uncovered_tables(extended) == {"future_user_table", "alert_hit"}


def test_retention_keeps_the_newest_and_the_young(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = BackupStore(tmp_path)
    store.ensure()
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ids = []
    for age_days in (0, 1, 2, 40, 50, 60):
        created = now - timedelta(days=age_days)
        backup_id = f"{created.strftime('%Y%m%dT%H%M%SZ')}-{age_days:08x}"
        store.archive_path(backup_id).write_bytes(b"x")
        store.save_record(BackupRecord(id=backup_id, created_at=created, size=1, sha256="0", dialect="sqlite",
                                       alembic_revision=None, app_version="t", reason="scheduled", tables=0, rows=0))
        ids.append(backup_id)
    assert [r.id for r in store.expired(now=now, keep_count=4, keep_days=30)] == ids[4:]
    assert store.expired(now=now, keep_count=2, keep_days=45) == [store.get(ids[4]), store.get(ids[5])]
    assert Manifest.database_member_for("postgresql") == "database.pgdump"
