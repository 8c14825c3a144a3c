"""The private ``account`` channel: outbox events in per-user ``seq`` order, gaps replayed.

Live events come from the bus (the outbox relay publishes each committed event at least
once). Each client keeps the last ``seq`` it was sent: duplicates are dropped, and a gap
(an event lost on the bus, or a reconnect with ``resume_from``) is filled from the
``outbox_event`` table. Events arriving while the table is read are held and sent after,
so the order is always ``seq`` order. A gap older than the table's retention, or longer
than the replay limit, is answered with ``resync_required``: reload state over REST.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from tradepilot.core.events import Event
from tradepilot.core.outbox import row_to_event
from tradepilot.core.outbox_models import OutboxEvent, UserEventSeq
from tradepilot.runtime import Runtime
from tradepilot.streaming.protocol import data_frame, dumps

ACCOUNT_JSON = '"account"'


def account_frame(event: Event) -> str:
    kind = event.topic.split(".", 2)[2] if event.topic.count(".") >= 2 else event.topic
    data = dumps({"id": event.id, "type": event.type, "kind": kind, "payload": event.payload,
                  "occurred_at": event.occurred_at})
    return data_frame("event", ACCOUNT_JSON, event.seq, data)


@dataclass(slots=True)
class AccountCursor:
    """``last_seq``: the last event sent. While ``catching_up``, live events wait in ``held``."""

    last_seq: int = 0
    catching_up: bool = True
    held: list[tuple[int | None, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Replay:
    events: list[Event]
    last_seq: int  # the user's newest seq known now (after the replayed events)
    resync_required: bool = False


async def load_gap(runtime: Runtime, user_id: uuid.UUID, after: int | None, *, limit: int) -> Replay:
    """Events of ``user_id`` after ``after`` from the outbox table; ``after=None``: none, just
    the newest seq (a fresh subscription starts from there)."""
    async with runtime.db.session() as session:
        last = await session.scalar(select(UserEventSeq.last_seq).where(UserEventSeq.user_id == user_id))
        last = int(last or 0)
        if after is None or after == last:
            return Replay([], last)
        if after > last:  # the client counts from another history (a restored database?)
            return Replay([], last, resync_required=True)
        rows = (await session.scalars(
            select(OutboxEvent).where(OutboxEvent.user_id == user_id, OutboxEvent.seq > after)
            .order_by(OutboxEvent.seq).limit(limit + 1)
        )).all()
        events = [row_to_event(row) for row in rows]
        await session.rollback()
    newest = max(last, events[-1].seq or 0) if events else last
    contiguous = all(event.seq == after + 1 + i for i, event in enumerate(events))
    if not events or not contiguous or len(events) > limit:
        return Replay([], newest, resync_required=True)
    return Replay(events, newest)
