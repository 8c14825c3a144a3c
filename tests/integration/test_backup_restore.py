"""Backup and restore on SQLite and PostgreSQL: identical data back, damaged or incompatible
backups refused with the live data untouched, consistency under a burst of orders."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import httpx
import pytest
from sqlalchemy import delete, select

from tests.helpers import new_user
from tests.integration.backup_support import (
    archive_of,
    doctor_manifest,
    live_digests,
    reauthenticated_admin,
    service_of,
    stable,
)
from tests.integration.orders_support import (
    assert_ledger_consistent,
    default_account,
    deposit,
    place,
    place_ok,
)
from tradepilot.identity.models import User
from tradepilot.ops.backup.archive import file_info
from tradepilot.ops.backup.errors import BackupCorrupted, BackupIncompatible, BackupUndecryptable
from tradepilot.ops.backup.restore_runner import maintenance_window
from tradepilot.ops.backup.service import BackupService
from tradepilot.trading.models import TradingAccount


async def _trading_users(client: httpx.AsyncClient, count: int) -> list[tuple[dict, str]]:
    users = []
    for _ in range(count):
        _, tokens = await new_user(client)
        account = await default_account(client, tokens)
        users.append((tokens, account))
    return users


async def _restore(runtime, service: BackupService, backup_id: str) -> None:  # type: ignore[no-untyped-def]
    await service.restore(backup_id, around_swap=lambda: maintenance_window(runtime, "test restore"))


async def test_backup_wipe_restore_gives_identical_data(client: httpx.AsyncClient, runtime, market) -> None:  # type: ignore[no-untyped-def]
    users = await _trading_users(client, 2)
    for tokens, account in users:
        await deposit(client, tokens, account, "BTC", "0.5")
        await place_ok(client, tokens, side="buy", type="market", quantity="0.01")
        await place_ok(client, tokens, side="buy", type="limit", quantity="0.02", price="59000")
    service = service_of(runtime)
    record = await service.create()
    manifest_tables = (await service.check_restorable(record.id)).tables
    before = stable(await live_digests(runtime))
    assert stable(manifest_tables) == before  # the manifest describes the database as it was
    assert manifest_tables["trading_order"].rows == 4 and manifest_tables["user_account"].rows == 2

    async with runtime.db.transaction() as session:  # wipe: every user and (cascading) their data
        await session.execute(delete(User))
    assert stable(await live_digests(runtime))["trading_order"].rows == 0

    await _restore(runtime, service, record.id)
    assert stable(await live_digests(runtime)) == before
    for _, account in users:
        await assert_ledger_consistent(runtime, account)
    # the restored platform works: the restored users' tokens are valid again and can trade
    tokens, account = users[0]
    await place_ok(client, tokens, side="sell", type="market", quantity="0.001")
    await assert_ledger_consistent(runtime, account)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "append"])
async def test_a_damaged_backup_is_refused_and_the_data_is_untouched(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                                     damage: str) -> None:
    await _trading_users(client, 1)
    service = service_of(runtime)
    record = await service.create()
    _, newer_tokens = await new_user(client)  # made after the backup: a restore would remove it
    path = archive_of(service, record)
    data = bytearray(path.read_bytes())
    if damage == "flip_byte":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-100:]
    else:
        data += b"\x00" * 16
    path.write_bytes(bytes(data))
    headers = await reauthenticated_admin(client, runtime)
    before = stable(await live_digests(runtime))

    answer = await client.post("/api/system/restore", json={"backup_id": record.id}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "backup_corrupted"
    with pytest.raises(BackupCorrupted):
        await service.verify(record.id)
    assert stable(await live_digests(runtime)) == before
    assert service.store.get(record.id).verified is False
    assert (await client.get("/api/auth/profile", headers={"Authorization": f"Bearer {newer_tokens['access_token']}"})
            ).status_code == 200


async def test_tampering_that_keeps_the_checksum_is_caught_by_the_encryption(client: httpx.AsyncClient,  # type: ignore[no-untyped-def]
                                                                            runtime) -> None:
    await _trading_users(client, 1)
    service = service_of(runtime)
    record = await service.create()
    path = archive_of(service, record)
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01  # inside the last encrypted block
    path.write_bytes(bytes(data))
    info = file_info(path)  # an attacker (or a bad disk and a re-computed record) fixes the checksum
    service.store.save_record(dataclasses.replace(record, sha256=info.sha256))
    before = stable(await live_digests(runtime))
    with pytest.raises(BackupCorrupted):
        await _restore(runtime, service, record.id)
    assert stable(await live_digests(runtime)) == before


async def test_a_backup_under_another_key_is_undecryptable(client: httpx.AsyncClient, runtime) -> None:  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet

    service = service_of(runtime)
    record = await service.create()
    from pydantic import SecretStr

    other = runtime.settings.model_copy(update={"backup_keys": [SecretStr(Fernet.generate_key().decode())]})
    with pytest.raises(BackupUndecryptable):
        await BackupService(other, runtime.clock, database_url=runtime.db.url).check_restorable(record.id)


@pytest.mark.parametrize("change", [{"alembic_revision": "ffffffffffff"}, {"dialect": "other"}, {"format_version": 99}])
async def test_an_incompatible_backup_is_refused(client: httpx.AsyncClient, runtime, change: dict) -> None:  # type: ignore[no-untyped-def]
    service = service_of(runtime)
    record = await service.create()
    if change.get("dialect") == "other":
        change = {"dialect": "postgresql" if runtime.db.dialect == "sqlite" else "sqlite"}
    doctor_manifest(service, record, **change)
    headers = await reauthenticated_admin(client, runtime)
    before = stable(await live_digests(runtime))
    answer = await client.post("/api/system/restore", json={"backup_id": record.id}, headers=headers)
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "backup_incompatible"
    with pytest.raises(BackupIncompatible):
        await _restore(runtime, service, record.id)
    assert stable(await live_digests(runtime)) == before


async def test_a_backup_during_a_burst_of_orders_restores_consistently(client: httpx.AsyncClient, runtime,  # type: ignore[no-untyped-def]
                                                                      market) -> None:
    users = await _trading_users(client, 4)
    service = service_of(runtime)

    async def burst(tokens: dict) -> None:
        for i in range(6):
            if i % 2:
                await place(client, tokens, side="buy", type="market", quantity="0.001")
            else:
                await place(client, tokens, side="buy", type="limit", quantity="0.002", price=str(59000 - i))

    async def backup_midway():  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)  # let the burst start first
        return await service.create()

    *_, record = await asyncio.gather(*(burst(tokens) for tokens, _ in users), backup_midway())
    manifest = await service.check_restorable(record.id)
    async with runtime.db.transaction() as session:
        await session.execute(delete(User))
    await _restore(runtime, service, record.id)

    async with runtime.db.session() as session:
        accounts = list(await session.scalars(select(TradingAccount.id)))
    assert len(accounts) == len(users)
    for account_id in accounts:  # every account's balances equal its ledger, nothing half-written
        await assert_ledger_consistent(runtime, str(account_id))
    assert stable(await live_digests(runtime))["trading_order"] == manifest.tables["trading_order"]
    assert uuid.UUID(users[0][1]) in accounts
