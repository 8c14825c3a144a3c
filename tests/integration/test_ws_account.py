"""The private ``account`` channel: outbox events with per-user seq, replay, resync, isolation.

Runs on SQLite and PostgreSQL (the replay reads the outbox table).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from tests.integration.ws_helpers import WSClient, authed, register, uvicorn_server
from tradepilot.core.events import Topics
from tradepilot.core.outbox import emit, row_to_event
from tradepilot.core.outbox_models import OutboxEvent, UserEventSeq
from tradepilot.runtime import Runtime


@pytest.fixture
async def address(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    async with uvicorn_server(app) as addr:
        yield addr


async def emit_events(runtime: Runtime, user_id: str, count: int, kind: str = "orders") -> None:
    for i in range(count):
        async with runtime.db.transaction() as session:
            await emit(session, topic=Topics.user(user_id, kind), type="order.updated",
                       payload={"order": i, "price": "100.5"}, user_id=user_id)


async def last_seq(runtime: Runtime, user_id: str) -> int:
    """The user's newest seq: registration already emits events (the default trading account)."""
    async with runtime.db.session() as session:
        return int(await session.scalar(select(UserEventSeq.last_seq)
                                         .where(UserEventSeq.user_id == uuid.UUID(user_id))) or 0)


async def account_events(ws: WSClient, count: int) -> list[dict[str, Any]]:
    return [await ws.expect_type("event", channel="account") for _ in range(count)]


async def test_live_events_carry_the_users_seq_and_stay_private(address: str, client: httpx.AsyncClient,
                                                               runtime: Runtime) -> None:
    token, user_id = await register(client)
    other_token, other_id = await register(client)
    base, other_base = await last_seq(runtime, user_id), await last_seq(runtime, other_id)
    async with contextlib.AsyncExitStack() as stack:
        ws, other = await authed(address, token, stack), await authed(address, other_token, stack)
        for conn in (ws, other):
            await conn.subscribe("account")
        assert (await ws.expect_type("subscribed", channel="account"))["seq"] == base
        await other.expect_type("subscribed", channel="account")
        await emit_events(runtime, user_id, 2)
        await emit_events(runtime, other_id, 1, kind="notifications")
        events = await account_events(ws, 2)
        assert [e["seq"] for e in events] == [base + 1, base + 2]
        assert events[0]["data"]["payload"] == {"order": 0, "price": "100.5"}
        assert events[0]["data"]["kind"] == "orders" and events[0]["data"]["type"] == "order.updated"
        theirs = await account_events(other, 1)
        assert theirs[0]["data"]["kind"] == "notifications" and theirs[0]["seq"] == other_base + 1
        await ws.send(type="ping")
        await ws.expect_type("pong")
        assert len([m for m in ws.seen if m["type"] == "event"]) == 2  # never the other user's


async def test_resume_from_replays_the_gap_then_continues_live(address: str, client: httpx.AsyncClient,
                                                              runtime: Runtime) -> None:
    token, user_id = await register(client)
    base = await last_seq(runtime, user_id)
    await emit_events(runtime, user_id, 3)  # while "disconnected"
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("account", resume_from=base + 1)
        assert (await ws.expect_type("subscribed", channel="account"))["seq"] == base + 1
        assert [e["seq"] for e in await account_events(ws, 2)] == [base + 2, base + 3]
        await emit_events(runtime, user_id, 1)
        assert [e["seq"] for e in await account_events(ws, 1)] == [base + 4]


async def test_a_gap_older_than_the_outbox_answers_resync_required(address: str, client: httpx.AsyncClient,
                                                                  runtime: Runtime) -> None:
    token, user_id = await register(client)
    base = await last_seq(runtime, user_id)
    await emit_events(runtime, user_id, 3)
    async with runtime.db.transaction() as session:  # as the relay's pruning does after 7 days
        await session.execute(delete(OutboxEvent).where(OutboxEvent.user_id == uuid.UUID(user_id),
                                                        OutboxEvent.seq <= base + 2))
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("account", resume_from=0)
        await ws.expect_type("subscribed", channel="account", seq=base + 3)
        resync = await ws.expect_type("resync_required")
        assert resync["channel"] == "account" and resync["seq"] == base + 3
        await emit_events(runtime, user_id, 1)
        assert [e["seq"] for e in await account_events(ws, 1)] == [base + 4]
        # a client that counts beyond the server's history must resync too
        await ws.send(type="unsubscribe", channels=["account"])
        await ws.expect_type("unsubscribed")
        await ws.subscribe("account", resume_from=99)
        assert (await ws.expect_type("resync_required"))["seq"] == base + 4


async def test_lost_bus_events_are_filled_from_the_outbox_and_duplicates_dropped(
        address: str, client: httpx.AsyncClient, runtime: Runtime) -> None:
    token, user_id = await register(client)
    base = await last_seq(runtime, user_id)
    async with contextlib.AsyncExitStack() as stack:
        ws = await authed(address, token, stack)
        await ws.subscribe("account")
        await ws.expect_type("subscribed", channel="account", seq=base)
        await emit_events(runtime, user_id, 1)
        assert [e["seq"] for e in await account_events(ws, 1)] == [base + 1]
        await runtime.services["outbox"].stop()  # events 2 and 3 are committed but not relayed
        await emit_events(runtime, user_id, 2)
        async with runtime.db.session() as session:
            third = (await session.scalars(select(OutboxEvent).where(OutboxEvent.seq == base + 3,
                                                                     OutboxEvent.user_id == uuid.UUID(user_id)))).one()
        await runtime.bus.publish(row_to_event(third))  # 2 was "lost": the hub reads it from the table
        assert [e["seq"] for e in await account_events(ws, 2)] == [base + 2, base + 3]
        await runtime.bus.publish(row_to_event(third))  # at-least-once: a redelivery is dropped
        await ws.send(type="ping")
        await ws.expect_type("pong")
        assert [m["seq"] for m in ws.seen if m["type"] == "event"] == [base + 1, base + 2, base + 3]
