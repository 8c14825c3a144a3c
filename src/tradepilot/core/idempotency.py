"""``Idempotency-Key`` with Stripe's semantics: a retried request never acts twice.

A mutating request that carries a key first *claims* it (its own committed row, so a
concurrent twin sees it at once), runs, and stores its answer **in the same transaction as
its change** (:meth:`IdempotencyClaim.complete`): a crash either loses both or keeps both,
so a retry can never act a second time on a change whose answer was lost.

For a key already known to the (owner, method, route):

* completed, same request body  -> the stored answer again, with ``Idempotent-Replayed: true``;
* any state, different body     -> 422 ``idempotency_key_reused``;
* in flight, lock still valid   -> 409 ``idempotency_request_in_progress`` (retry later);
* in flight, lock expired       -> taken over (the first request died), runs again.

A request that fails (an error answer, or an exception) releases its claim and changes
nothing, so the same key may be retried. Keys are scoped per owner: two users using the same
key never see each other's answers. Completed records are kept :data:`RETENTION` (24 h) and
pruned after.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from tradepilot.core.errors import BadRequest, Conflict, Unprocessable
from tradepilot.core.idempotency_models import IdempotencyRecord

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tradepilot.core.clock import Clock
    from tradepilot.core.db import Database

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
LOCK_TIMEOUT = timedelta(seconds=60)
RETENTION = timedelta(hours=24)
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, like Stripe's keys (UUIDs fit)
IN_FLIGHT, COMPLETED = "in_flight", "completed"
_REPLAYED_RESPONSE_HEADERS = ("content-type", "location")


def validate_key(raw: str) -> str:
    if not _KEY_PATTERN.match(raw):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters.",
                         code="invalid_idempotency_key")
    return raw


def request_fingerprint(body: bytes) -> str:
    """A hash of the request's meaning: JSON bodies compare by value (key order and spacing ignored)."""
    try:
        canonical = json.dumps(json.loads(body or b"null", parse_float=str, parse_int=str),
                               sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class IdempotencyClaim:
    """This request's hold on a key; :meth:`complete` it with the change, or release it."""

    record_id: int
    attempt: int
    completed: bool = False

    async def complete(self, session: AsyncSession, *, status: int, body: bytes,
                       headers: dict[str, str] | None = None, now: datetime) -> None:
        """Store the answer in the caller's transaction (the one that makes the change)."""
        kept = {k.lower(): v for k, v in (headers or {}).items() if k.lower() in _REPLAYED_RESPONSE_HEADERS}
        result = await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == self.record_id, IdempotencyRecord.attempt == self.attempt,
                   IdempotencyRecord.state == IN_FLIGHT)
            .values(state=COMPLETED, response_status=status, response_body=body, response_headers=kept,
                    completed_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # our lock expired and another request took the key over: do not act twice
            raise Conflict("This idempotency key was taken over by a retry of the request.",
                           code="idempotency_request_in_progress")
        self.completed = True


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    owner: str
    method: str
    route: str
    key: str
    fingerprint: str


async def claim(db: Database, clock: Clock, scope: IdempotencyScope) -> IdempotencyClaim | StoredResponse:
    """Claim the key for this request, or answer with what an earlier one stored."""
    now = clock.now()
    for _ in range(3):  # an insert race or a take-over race: look again
        try:
            async with db.transaction() as session:
                row = IdempotencyRecord(owner=scope.owner, method=scope.method, route=scope.route, key=scope.key,
                                        request_hash=scope.fingerprint, state=IN_FLIGHT, attempt=1,
                                        locked_until=now + LOCK_TIMEOUT, created_at=now)
                session.add(row)
                await session.flush()
                return IdempotencyClaim(record_id=row.id, attempt=1)
        except IntegrityError:
            pass
        outcome = await _existing(db, scope, now)
        if outcome is not None:
            return outcome
    raise Conflict("This idempotency key is being used by another request.", code="idempotency_request_in_progress")


async def _existing(db: Database, scope: IdempotencyScope, now: datetime) -> IdempotencyClaim | StoredResponse | None:
    async with db.transaction() as session:
        row = (await session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.owner == scope.owner, IdempotencyRecord.method == scope.method,
            IdempotencyRecord.route == scope.route, IdempotencyRecord.key == scope.key))).scalar_one_or_none()
        if row is None:
            return None  # released meanwhile: try to insert again
        if row.request_hash != scope.fingerprint:
            raise Unprocessable("This idempotency key was already used with a different request body.",
                                code="idempotency_key_reused")
        if row.state == COMPLETED:
            return StoredResponse(status=row.response_status or 200, headers=dict(row.response_headers or {}),
                                  body=row.response_body or b"")
        if row.locked_until > now:
            raise Conflict("A request with this idempotency key is still in progress; retry later.",
                           code="idempotency_request_in_progress",
                           headers={"Retry-After": str(max(1, int((row.locked_until - now).total_seconds())))})
        taken = await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == row.id, IdempotencyRecord.attempt == row.attempt,
                   IdempotencyRecord.state == IN_FLIGHT)
            .values(attempt=row.attempt + 1, locked_until=now + LOCK_TIMEOUT)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return IdempotencyClaim(record_id=row.id, attempt=row.attempt + 1)


async def release(db: Database, held: IdempotencyClaim) -> None:
    """Give the key back after a failed request (nothing was changed, a retry may run)."""
    async with db.transaction() as session:
        await session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.id == held.record_id, IdempotencyRecord.attempt == held.attempt,
                   IdempotencyRecord.state == IN_FLIGHT)
            .execution_options(synchronize_session=False)
        )


async def prune(db: Database, clock: Clock, *, older_than: timedelta = RETENTION) -> int:
    """Delete records older than the retention (and in-flight leftovers of dead requests)."""
    cutoff = clock.now() - older_than
    async with db.transaction() as session:
        result = await session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
            .execution_options(synchronize_session=False)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def replay_headers(stored: StoredResponse) -> dict[str, Any]:
    return {**stored.headers, REPLAYED_HEADER: "true"}
