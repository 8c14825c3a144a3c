"""After a restore, live orders wait for each account's first reconciliation (docs/operations.md).

A restored database is older than the exchanges: orders placed, filled or cancelled there
since the backup are unknown to it, and balances differ. Placing a live order on that stale
view could overspend or double up, so the restore leaves a mark — "restored at T" — and live
order placement on an account answers 503 ``reconciliation_pending`` (with ``Retry-After``)
until the account has a reconciliation run newer than the restored database's last one that
read the exchange (status ``ok`` or ``differences``; a ``failed`` run does not count). "Newer" is
by the account's run ``seq``, recorded in the mark at the swap — not by time, which a restored
database or a test clock may not order. Paper trading is not held.

Like the maintenance flag, the mark lives outside the database it describes — in Redis
(``<prefix>live:restored_at``) with ``TRADEPILOT_REDIS_URL``, else in
``<data_dir>/live-restored-at.json`` — so every replica reads the same one. It is removed once
every active live account has reconciled (``wait_for_reconciliation``); until then a live
order costs one indexed look-up of the account's runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from tradepilot.core.errors import ServiceUnavailable
from tradepilot.trading.live.reconciliation_models import ReconciliationRun, RunStatus
from tradepilot.trading.models import AccountKind, AccountStatus, TradingAccount

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.trading.live.post_restore")

FILE_NAME = "live-restored-at.json"
RETRY_AFTER_SECONDS = 10
WAIT_SECONDS = 300.0  # how long a restore waits for the accounts' first runs before reporting them pending
POLL_SECONDS = 0.2
COUNTED = (RunStatus.OK, RunStatus.DIFFERENCES)


class ReconciliationPending(ServiceUnavailable):
    code, title = "reconciliation_pending", "Reconciliation pending"


@dataclass(frozen=True)
class Restored:
    at: datetime
    baseline: dict[str, int]  # account id -> its newest run's seq in the restored database

    def after(self, account_id: uuid.UUID) -> int:
        return self.baseline.get(str(account_id), 0)


class PostRestoreMark:
    """The shared "restored at" mark of one runtime (Redis key or file)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def _file(self) -> Path:
        return Path(self.runtime.settings.data_dir) / FILE_NAME

    @property
    def _key(self) -> str:
        return self.runtime.key("live", "restored_at")

    async def set(self, at: datetime) -> None:
        """Called on the freshly restored database: each account's newest run is the baseline."""
        async with self.runtime.db.read() as session:
            baseline = {str(account_id): int(seq) for account_id, seq in (await session.execute(
                select(ReconciliationRun.account_id, func.max(ReconciliationRun.seq))
                .group_by(ReconciliationRun.account_id))).all()}
        value = json.dumps({"restored_at": at.isoformat(), "baseline": baseline}).encode()
        if self.runtime.redis is not None:
            await self.runtime.redis.set(self._key, value)
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        partial = self._file.with_name(FILE_NAME + ".partial")
        partial.write_bytes(value)
        partial.replace(self._file)

    async def get(self) -> Restored | None:
        if self.runtime.redis is not None:
            raw = await self.runtime.redis.get(self._key)
        else:
            try:
                raw = self._file.read_bytes()
            except FileNotFoundError:
                raw = None
        if raw is None:
            return None
        try:
            body = json.loads(raw)
            return Restored(at=datetime.fromisoformat(body["restored_at"]),
                            baseline={str(k): int(v) for k, v in body["baseline"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):  # unreadable: hold live orders, don't guess
            logger.warning("unreadable post-restore mark; waiting for any new run")
            return Restored(at=self.runtime.clock.now(), baseline={})

    async def clear(self) -> None:
        if self.runtime.redis is not None:
            await self.runtime.redis.delete(self._key)
        else:
            self._file.unlink(missing_ok=True)


async def _first_run_after(runtime: Runtime, account_id: uuid.UUID, restored: Restored) -> ReconciliationRun | None:
    """The account's first run after the restore (None: none yet)."""
    async with runtime.db.read() as session:
        return await session.scalar(
            select(ReconciliationRun).where(ReconciliationRun.account_id == account_id,
                                            ReconciliationRun.seq > restored.after(account_id))
            .order_by(ReconciliationRun.seq).limit(1))


async def ensure_reconciled_since_restore(runtime: Runtime, account_id: uuid.UUID) -> None:
    """Raise ReconciliationPending if a restore happened and this account has not read its
    exchange since (called before a live order is recorded)."""
    restored = await PostRestoreMark(runtime).get()
    if restored is None:
        return
    async with runtime.db.read() as session:
        done = await session.scalar(select(ReconciliationRun.id).where(
            ReconciliationRun.account_id == account_id, ReconciliationRun.seq > restored.after(account_id),
            ReconciliationRun.status.in_(COUNTED)).limit(1))
    if done is None:
        raise ReconciliationPending(
            "The database was restored from a backup; this live account is being reconciled with its exchange "
            "before it takes orders again.", headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            extra={"account_id": str(account_id), "restored_at": restored.at.isoformat()})


async def wait_for_reconciliation(runtime: Runtime, *, timeout: float = WAIT_SECONDS) -> dict[str, dict[str, Any]]:
    """Per active live account: ``reconciled`` (with the run's status), ``failed`` (with its
    error code: the account stays held until a later run reads the exchange) or ``pending``
    (no run within ``timeout``). Clears the mark when every account reconciled."""
    mark = PostRestoreMark(runtime)
    restored = await mark.get()
    if restored is None:
        return {}
    async with runtime.db.read() as session:
        accounts = list(await session.scalars(select(TradingAccount.id).where(
            TradingAccount.kind == AccountKind.LIVE, TradingAccount.status == AccountStatus.ACTIVE)))
    outcome: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    waiting = set(accounts)
    while waiting:
        for account_id in sorted(waiting):
            run = await _first_run_after(runtime, account_id, restored)
            if run is None:
                continue
            waiting.discard(account_id)
            if run.status in COUNTED:
                outcome[str(account_id)] = {"state": "reconciled", "run_id": str(run.id), "status": run.status,
                                            "differences": len(run.differences)}
            else:
                outcome[str(account_id)] = {"state": "failed", "run_id": str(run.id), "error": run.error_code}
        if not waiting or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    for account_id in waiting:
        outcome[str(account_id)] = {"state": "pending", "error": "no reconciliation run yet"}
    if all(o["state"] == "reconciled" for o in outcome.values()):
        await mark.clear()
    for account_id, result in outcome.items():
        log = logger.info if result["state"] == "reconciled" else logger.warning
        log("post-restore reconciliation", extra={"account_id": account_id, **result})
    return outcome
