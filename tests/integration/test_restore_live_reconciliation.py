"""A restore with live accounts (docs/operations.md, "Restore"): the live reconcilers pause in
maintenance, every live account is reconciled against its exchange after the swap — orders
filled there since the backup are recorded — and live orders wait (503
``reconciliation_pending``) until their account's first post-restore run read the exchange.
Plus: scratch databases and work directories left by a crashed restore are swept.
On SQLite and PostgreSQL, with the real ccxt ``binance`` against tests/fakes/binance_spot.py."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.fakes.binance_spot import FakeBinanceSpot
from tests.helpers import bearer
from tests.integration.backup_support import reauthenticated_admin, service_of
from tests.integration.live_support import fake_binance, lifespan_app, live_settings
from tests.integration.orders_support import ORDERS, assert_ledger_consistent
from tests.integration.test_live_reconciliation import orders_of, reconcile, reconciled
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.ops.backup import pg_tools
from tradepilot.ops.backup.maintenance import get_maintenance
from tradepilot.ops.backup.service import SCRATCH_STALE_AFTER
from tradepilot.ops.backup.setup import restore_runner
from tradepilot.trading.live.post_restore import PostRestoreMark
from tradepilot.trading.live.reconciliation_owner import supervisor


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceSpot]:
    async with fake_binance() as server:
        yield server


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot) -> Settings:
    # periodic runs only when the test clock says so: after a restore, only the start-up run comes
    return live_settings(database_url, tmp_path, fake, lease_ttl_seconds=5)


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with lifespan_app(settings, clock) as application:
        yield application


async def resting_order(client: httpx.AsyncClient, tokens: dict, account_id: str) -> httpx.Response:
    return await client.post(ORDERS, headers=bearer(tokens), json={
        "account_id": account_id, "symbol": "BTC/USDT", "side": "buy", "type": "limit", "quantity": "0.02",
        "price": "59000"})


async def restore(client: httpx.AsyncClient, runtime: Any, admin: dict, backup_id: str) -> dict:
    accepted = await client.post("/api/system/restore", json={"backup_id": backup_id}, headers=admin)
    assert accepted.status_code == 202, accepted.text
    await restore_runner(runtime).task
    state = (await client.get("/api/system/restore", headers=admin)).json()
    assert state["state"] == "succeeded", state
    return state  # type: ignore[no-any-return]


async def test_an_order_filled_after_the_backup_is_recorded_by_the_post_restore_reconciliation(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    admin = await reauthenticated_admin(client, runtime)
    tokens, account = await reconciled(client, fake)
    placed = await resting_order(client, tokens, account["id"])
    assert placed.status_code == 201 and placed.json()["status"] == "new", placed.text
    record = await service_of(runtime).create()
    [on_exchange] = fake.orders
    fake.fill_resting(on_exchange.client_order_id, "0.02")  # after the backup: the restored data misses it
    before = supervisor(runtime)

    state = await restore(client, runtime, admin, record.id)
    [(account_id, outcome)] = state["live_accounts"].items()
    assert (account_id, outcome["state"], outcome["status"]) == (account["id"], "reconciled", "differences")
    assert supervisor(runtime) is not None and supervisor(runtime) is not before  # paused, then started again
    assert await PostRestoreMark(runtime).get() is None  # every account reconciled: the mark is gone
    [order] = await orders_of(client, tokens, account["id"])
    assert (order["id"], order["status"], order["filled_quantity"]) == (placed.json()["id"], "filled", "0.02")
    fills = (await client.get("/api/trading/fills", headers=bearer(tokens),
                              params={"order_id": order["id"]})).json()["items"]
    assert [(f["price"], f["quantity"]) for f in fills] == [("59000", "0.02")]
    await assert_ledger_consistent(runtime, account["id"])
    again = await resting_order(client, tokens, account["id"])
    assert again.status_code == 201, again.text


async def test_live_orders_wait_for_the_first_post_restore_run_that_read_the_exchange(
        client: httpx.AsyncClient, fake: FakeBinanceSpot, runtime: Any) -> None:
    admin = await reauthenticated_admin(client, runtime)
    tokens, account = await reconciled(client, fake)
    record = await service_of(runtime).create()
    placed = await resting_order(client, tokens, account["id"])  # after the backup: unknown to it
    assert placed.status_code == 201, placed.text
    fake.fail_next("openOrders", 400, {"code": -1021, "msg": "Timestamp outside of the recvWindow."})

    state = await restore(client, runtime, admin, record.id)
    outcome = state["live_accounts"][account["id"]]
    assert outcome["state"] == "failed" and outcome["error"], outcome
    assert await get_maintenance(runtime).current() is None  # the platform is open; this account is not
    refused = await resting_order(client, tokens, account["id"])
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "reconciliation_pending" and refused.headers["Retry-After"]
    assert len(fake.orders) == 1  # nothing reached the exchange

    run = await reconcile(client, tokens, account["id"])  # the exchange answers now
    assert (run["status"], [d["kind"] for d in run["differences"]]) == ("differences", ["external_order"]), run
    [order] = await orders_of(client, tokens, account["id"])  # its row is gone: back as the exchange shows it
    assert (order["status"], order["source"], order["quantity"], order["price"]) == (
        "new", "external", "0.02", "59000")
    accepted = await resting_order(client, tokens, account["id"])
    assert accepted.status_code == 201, accepted.text
    assert len(fake.orders) == 2


async def test_stale_scratch_left_by_a_crash_is_swept_before_a_restore_and_fresh_scratch_is_kept(
        runtime: Any, db_backend: str) -> None:
    service = service_of(runtime)
    work = service.store.scratch_dir()
    stale_dir, fresh_dir = work / "restore-crashed", work / "verify-running"
    for path in (stale_dir, fresh_dir):
        path.mkdir()
        (path / "database").write_bytes(b"plaintext")
    old = time.time() - SCRATCH_STALE_AFTER.total_seconds() - 60
    os.utime(stale_dir, (old, old))
    names: list[str] = []
    if db_backend == "postgresql":
        live = pg_tools.PgTarget.parse(runtime.db.url)
        names = [pg_tools.scratch_name(live.database, "restore", created=old),
                 pg_tools.scratch_name(live.database, "restore")]
        for name in names:
            await pg_tools.create_database(live, name)
        other = "someone_elses_restore_00000001_abcdef"  # not our pattern: never touched
        await pg_tools.create_database(live, other)

    try:
        removed = await service.sweep_scratch()
        assert stale_dir.name in removed and not stale_dir.exists()
        assert fresh_dir.exists() and Path(fresh_dir / "database").read_bytes() == b"plaintext"
        if db_backend == "postgresql":
            assert removed[-1:] == [names[0]]
            async with runtime.db.read() as session:
                left = set((await session.execute(text("SELECT datname FROM pg_database"))).scalars())
            assert names[0] not in left and {names[1], other} <= left and live.database in left
    finally:
        if db_backend == "postgresql":
            for name in (*names, other):
                await pg_tools.drop_database(live, name)


def test_scratch_names_carry_their_age_and_only_ours_match() -> None:
    name = pg_tools.scratch_name("tradepilot", "replaced", created=1_700_000_000)
    assert len(pg_tools.scratch_name("x" * 63, "replaced")) <= 63
    assert pg_tools.scratch_created("tradepilot", name) == 1_700_000_000
    assert pg_tools.scratch_created("tradepilot", "tradepilot") is None
    assert pg_tools.scratch_created("tradepilot", "tradepilot_restore_1234") is None
    assert pg_tools.scratch_created("other", name) is None
