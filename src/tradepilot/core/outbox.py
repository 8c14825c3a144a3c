"""The transactional outbox (DESIGN §1.5): events are written with the change, relayed later.

``emit`` adds an event to the ``outbox_event`` table in the caller's transaction, so the event
exists if and only if the change was committed. The :class:`OutboxRelay` (one per deployment,
held by the ``outbox-relay`` lease) publishes unpublished events to the bus at least once, in
(created_at, id) order, then marks them published. Consumers that must act once per event
call :func:`consume_once` in their own transaction.
"""

from __future__ import annotations

import enum
import logging
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tradepilot.core.events import Event
from tradepilot.core.money import to_plain_string
from tradepilot.core.outbox_models import ConsumedEvent, OutboxEvent, UserEventSeq

logger = logging.getLogger("tradepilot.outbox")

RELAY_LEASE = "outbox-relay"
RETENTION = timedelta(days=7)  # published events and consumer receipts are kept this long
PRUNE_EVERY_SECONDS = 3600.0
BATCH_SIZE = 500
WAKE_TOPIC = "_outbox.wake"  # a hint on the bus: "something was committed", for the holder

_EMITTED = "tradepilot.outbox.emitted"  # session.info key: this transaction emitted events

NotifyPredicate = Callable[[str, dict[str, Any]], bool]
_notify_predicates: list[NotifyPredicate] = []


def notify_when(predicate: NotifyPredicate) -> NotifyPredicate:
    """Register ``predicate(type, payload)``: True for a user's event that makes a notification.

    The notifications package registers its rule (``notifications.sources``) so that the core
    does not import it; an event the rule selects is written with ``notify`` set, the queue the
    notifier reads. With no rule registered every user event is queued (handled, then dropped by
    the notifier): nothing is lost in a process that never imported the rule.
    """
    if predicate not in _notify_predicates:
        _notify_predicates.append(predicate)
    return predicate


def _notify(type_: str, body: dict[str, Any], user_id: uuid.UUID | None) -> bool | None:
    if user_id is None:
        return None
    try:
        if not _notify_predicates or any(predicate(type_, body) for predicate in _notify_predicates):
            return True
    except Exception:  # noqa: BLE001 - a rule failing on an odd payload must not fail the change: the notifier decides
        return True
    return None


# --- payloads -------------------------------------------------------------------------------

def jsonable(value: Any) -> Any:
    """A JSON-ready copy of ``value``: Decimal → plain string, UUID → str, datetime → RFC 3339.

    Anything else that JSON cannot carry raises ``TypeError`` here, at emit time, rather than
    in the relay later.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError("NaN and infinities are not JSON")
        return value
    if isinstance(value, Decimal):
        return to_plain_string(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetime in an event payload: use an aware UTC datetime")
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"event payload keys must be strings, not {type(key).__name__}")
            out[key] = jsonable(item)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable in an event payload")


# --- writing --------------------------------------------------------------------------------

def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


_last_created_at = datetime.min.replace(tzinfo=timezone.utc)


def _created_at(now: datetime | None) -> datetime:
    """``now`` if given; else the wall clock, made strictly increasing within this process so
    that events of one transaction keep their order in the relay."""
    global _last_created_at
    if now is not None:
        return now.astimezone(timezone.utc)
    moment = datetime.now(timezone.utc)
    if moment <= _last_created_at:
        moment = _last_created_at + timedelta(microseconds=1)
    _last_created_at = moment
    return moment


async def emit(
    session: AsyncSession,
    *,
    topic: str,
    type: str,
    payload: dict[str, Any],
    user_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> Event:
    """Add an event to the outbox in the caller's transaction (never commits).

    ``payload`` is converted with :func:`jsonable`. A user's events get consecutive ``seq``
    numbers (1, 2, 3...). The relay is woken automatically when the transaction commits.
    """
    (event,) = await emit_many(session, [Pending(topic=topic, type=type, payload=payload, user_id=user_id,
                                                 now=now)])
    return event


@dataclass(slots=True)
class Pending:
    """An event to write with :func:`emit_many` (same fields as :func:`emit`)."""

    topic: str
    type: str
    payload: dict[str, Any]
    user_id: uuid.UUID | str | None = None
    now: datetime | None = None


async def _bump_seq(session: AsyncSession, user_id: uuid.UUID, n: int) -> int:
    """Reserve ``n`` consecutive numbers of the user's sequence in ONE statement; returns the last.

    An upsert (``INSERT .. ON CONFLICT DO UPDATE SET last_seq = last_seq + n RETURNING``): it
    row-locks the counter on PostgreSQL until the caller commits, so two transactions never
    obtain the same number, and a first event for a new user never fails on a duplicate key.
    On SQLite transactions are serialised by ``BEGIN IMMEDIATE``."""
    return (await session.execute(_seq_bump(session), {"seq_user": user_id, "seq_n": n})).scalar_one()


# Statements built once (each event of every order runs them): a statement made per call
# costs its construction and its cache key every time; a multi-row VALUES insert is not
# cached at all (compiled anew per call), an executemany of _INSERT_EVENT is.
_INSERT_EVENT = insert(OutboxEvent.__table__)
_SEQ_BUMPS: dict[str, Any] = {}


def _seq_bump(session: AsyncSession) -> Any:
    """``INSERT .. ON CONFLICT DO UPDATE SET last_seq = last_seq + :n RETURNING last_seq``, per dialect."""
    dialect = session.get_bind().dialect.name
    stmt = _SEQ_BUMPS.get(dialect)
    if stmt is None:
        n = bindparam("seq_n", type_=UserEventSeq.last_seq.type)
        stmt = _SEQ_BUMPS[dialect] = (
            _insert(session)(UserEventSeq)
            .values(user_id=bindparam("seq_user", type_=UserEventSeq.user_id.type), last_seq=n)
            .on_conflict_do_update(index_elements=[UserEventSeq.user_id], set_={"last_seq": UserEventSeq.last_seq + n})
            .returning(UserEventSeq.last_seq))
    return stmt


async def emit_many(session: AsyncSession, pending: Sequence[Pending]) -> list[Event]:
    """:func:`emit` for several events, in their order, in as few statements as possible.

    One sequence bump per user (``last_seq + n``, see :func:`_bump_seq`) and
    ONE multi-row insert: a user's events get consecutive ``seq`` numbers in list order,
    exactly as that many :func:`emit` calls would give them.
    """
    if not pending:
        return []
    prepared = []
    counts: dict[uuid.UUID, int] = {}
    for item in pending:
        body = jsonable(item.payload)
        if not isinstance(body, dict):
            raise TypeError("event payload must be a dict")
        uid = uuid.UUID(str(item.user_id)) if item.user_id is not None else None
        if uid is not None:
            counts[uid] = counts.get(uid, 0) + 1
        prepared.append((item, body, uid))
    next_of: dict[uuid.UUID, int] = {}
    for uid in sorted(counts, key=str):  # a fixed lock order across users
        n = counts[uid]
        next_of[uid] = await _bump_seq(session, uid, n) - n + 1
    rows, events = [], []
    for item, body, uid in prepared:
        seq = None
        if uid is not None:
            seq = next_of[uid]
            next_of[uid] = seq + 1
        created_at = _created_at(item.now)
        event_id = uuid.uuid4().hex
        rows.append({"id": event_id, "topic": item.topic, "type": item.type, "user_id": uid, "seq": seq,
                     "payload": body, "created_at": created_at, "published_at": None,
                     "notify": _notify(item.type, body, uid)})
        events.append(Event(topic=item.topic, type=item.type, payload=body, user_id=str(uid) if uid else None,
                            seq=seq, id=event_id, occurred_at=created_at.isoformat()))
    await session.execute(_INSERT_EVENT, rows)  # an executemany: one cached statement, however many rows
    session.info[_EMITTED] = session.get_bind().engine  # the relay to wake is this engine's
    return events


async def consume_once(session: AsyncSession, consumer: str, event_id: str, *,
                       now: datetime | None = None) -> bool:
    """Record that ``consumer`` handled ``event_id``; False if it already had.

    Call it in the same transaction as the consumer's effect: if that transaction rolls back,
    so does the receipt. A duplicate does not raise (``ON CONFLICT DO NOTHING``), so the
    caller's transaction stays usable. On PostgreSQL a concurrent duplicate waits for the
    first to commit, then returns False.
    """
    stmt = (
        _insert(session)(ConsumedEvent)
        .values(consumer=consumer, event_id=event_id, consumed_at=now or datetime.now(timezone.utc))
        .on_conflict_do_nothing(index_elements=[ConsumedEvent.consumer, ConsumedEvent.event_id])
    )
    result = await session.execute(stmt)
    return result.rowcount == 1  # type: ignore[attr-defined]


def row_to_event(row: OutboxEvent) -> Event:
    return Event(topic=row.topic, type=row.type, payload=row.payload or {},
                 user_id=str(row.user_id) if row.user_id else None, seq=row.seq, id=row.id,
                 occurred_at=row.created_at.isoformat())


# --- waking the relay after a commit ----------------------------------------------------------

_wakers: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()


def register_waker(engine: Engine, waker: Callable[[], None] | None) -> None:
    """Call ``waker`` after each commit, on ``engine``, of a transaction that emitted events."""
    if waker is None:
        _wakers.pop(engine, None)
    else:
        _wakers[engine] = waker


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    engine = session.info.pop(_EMITTED, None)
    waker = _wakers.get(engine) if engine is not None else None
    if waker is not None:
        try:
            waker()
        except Exception:  # the commit succeeded; a missed wake-up only costs one poll
            logger.warning("outbox relay wake-up failed", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_EMITTED, None)


from tradepilot.core.outbox_relay import OutboxRelay  # noqa: E402  (it builds on the above)

__all__ = ["OutboxRelay", "Pending", "consume_once", "emit", "emit_many", "jsonable", "register_waker",
           "row_to_event"]
