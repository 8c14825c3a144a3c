"""Signals: the lifecycle on a replayed series under the test clock, the performance figures
checked by hand beside the random-entry baseline, filters and pagination, ownership 404s,
scopes, and the outbox events WebSocket clients receive."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from tests.integration.signals_support import (
    HOUR,
    SIGNALS,
    T0,
    bars,
    create,
    fetch,
    follow,
    key_user,
    store,
)
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.runtime import Runtime

# bar 2's range holds 105 (A's entry); bar 4's high reaches 121 (A's target 120); bar 5 closes 113
SERIES = [("100", "102", "99", "101"), ("101", "103", "100", "102"), ("102", "106", "101", "105"),
          ("105", "110", "104", "108"), ("108", "121", "107", "119"), ("119", "119", "112", "113"),
          ("113", "115", "111", "114"), ("114", "116", "113", "115")]


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    application = create_app(settings.model_copy(update={"signals_tracker_seconds": 3600.0}), clock=clock)
    async with application.router.lifespan_context(application):
        yield application


async def test_lifecycle_on_a_replayed_series_then_performance_by_hand(
        client: httpx.AsyncClient, runtime: Runtime, clock: TestClock) -> None:
    auth = await key_user(client)
    await store(runtime, bars(SERIES))
    a = await create(client, auth, side="buy", strength=0.8, entry="105", stop_loss="95", take_profit="120",
                     horizon=4, reason="breakout retest")
    b = await create(client, auth, side="sell", strength=0.4, horizon=2)  # at market: bar 0's open
    c = await create(client, auth, side="buy", entry="50", expires_at=(T0 + 5 * HOUR).isoformat())
    d = await create(client, auth, side="buy", horizon=1)  # at market, one bar: 100 → 101
    cancelled = await create(client, auth, side="buy", entry="104")
    assert a["status"] == "active" and a["source"] == "user" and a["entry"] == "105" and a["strength"] == 0.8
    assert b["expires_at"].startswith("2026-01-01T02:00:00")  # one horizon from now by default
    put = await client.put(f"{SIGNALS}/{cancelled['id']}/status", json={"status": "cancelled"}, headers=auth)
    assert put.status_code == 200 and put.json()["status"] == "cancelled"

    clock.advance(90 * 60)  # 01:30 — bar 0 closed
    await follow(runtime)
    b_now, d_now = await fetch(client, auth, b["id"]), await fetch(client, auth, d["id"])
    assert (b_now["status"], b_now["trigger_price"], b_now["triggered_at"][:19]) == ("triggered", "100",
                                                                                     "2026-01-01T00:00:00")
    assert (d_now["outcome"], d_now["exit_price"], Decimal(d_now["horizon_return"])) == ("horizon", "101",
                                                                                        Decimal("0.01"))
    assert (await fetch(client, auth, a["id"]))["status"] == "active"  # 105 not reached on bar 0
    assert (await fetch(client, auth, cancelled["id"]))["status"] == "cancelled"  # bar 0 held 104: not followed

    clock.advance(30 * 60)  # 02:00 — bar 1 closed: B's two bars are over (100 → 102 on a sell)
    await follow(runtime)
    b_now = await fetch(client, auth, b["id"])
    assert (b_now["outcome"], b_now["exit_price"], Decimal(b_now["horizon_return"])) == ("horizon", "102",
                                                                                        Decimal("-0.02"))
    assert b_now["evaluated_at"].startswith("2026-01-01T02:00:00")

    clock.advance(3600)  # 03:00 — bar 2 closed: its range holds 105
    await follow(runtime)
    a_now = await fetch(client, auth, a["id"])
    assert (a_now["status"], a_now["trigger_price"], a_now["triggered_at"][:19]) == ("triggered", "105",
                                                                                     "2026-01-01T02:00:00")
    active = (await client.get(f"{SIGNALS}/active", headers=auth)).json()["items"]
    assert [s["id"] for s in active] == [c["id"]]

    clock.advance(2 * 3600)  # 05:00 — bar 4 reached A's target; C's expiry has come
    await follow(runtime)
    a_now = await fetch(client, auth, a["id"])
    assert (a_now["outcome"], a_now["exit_price"], a_now["outcome_at"][:19]) == ("take_profit", "120",
                                                                                 "2026-01-01T05:00:00")
    assert a_now["horizon_return"] is None  # the horizon (bars 2..5) has not passed
    assert (await fetch(client, auth, c["id"]))["status"] == "expired"

    clock.advance(3600)  # 06:00 — bar 5 closed at 113: A's return at its horizon
    await follow(runtime)
    a_now = await fetch(client, auth, a["id"])
    assert Decimal(a_now["horizon_return"]) == (Decimal(113) / Decimal(105) - 1).quantize(Decimal("1e-10"))
    assert a_now["outcome"] == "take_profit"  # the stop/target outcome stays the first one hit
    assert await follow(runtime) == 0  # nothing left to move; a repeated step writes nothing

    put = await client.put(f"{SIGNALS}/{a['id']}/status", json={"status": "cancelled"}, headers=auth)
    assert put.status_code == 409 and put.json()["code"] == "signal_not_active"

    # the events a WebSocket client receives (user channel), in order
    async with runtime.db.session() as session:
        events = list(await session.scalars(select(OutboxEvent).where(OutboxEvent.topic.like("user.%.signals"))
                                            .order_by(OutboxEvent.seq)))
    kinds = [(e.type, e.payload["signal"]["id"]) for e in events]
    assert kinds.count(("signal.created", a["id"])) == 1
    assert ("signal.status_changed", a["id"]) in kinds and ("signal.status_changed", c["id"]) in kinds
    assert [t for t, i in kinds if i == a["id"]] == ["signal.created", "signal.status_changed", "signal.outcome",
                                                     "signal.outcome"]

    # performance: returns A +0.0761904762, B −0.02, D +0.01 (all source "user")
    perf = await client.get(f"{SIGNALS}/performance", params={"samples": 10, "seed": 3}, headers=auth)
    assert perf.status_code == 200, perf.text
    body = perf.json()
    r_a = float((Decimal(113) / Decimal(105) - 1).quantize(Decimal("1e-10")))
    returns = [r_a, -0.02, 0.01]
    assert body["overall"]["count"] == 3
    assert body["overall"]["hit_rate"] == round(2 / 3, 6)
    assert body["overall"]["mean_return"] == pytest.approx(sum(returns) / 3, abs=1e-8)
    assert body["overall"]["median_return"] == pytest.approx(0.01, abs=1e-12)
    assert body["overall"]["outcomes"] == {"take_profit": 1, "stop_loss": 0, "horizon": 2}
    assert set(body["by_source"]) == {"user"}
    assert body["statuses"] == {"active": 0, "triggered": 3, "expired": 1, "cancelled": 1}
    base = body["baseline"]
    assert (base["method"], base["seed"], base["samples_per_signal"]) == ("random_entry", 3, 10)
    assert base["overall"]["count"] == 30  # ten random entries per scored signal
    # every random entry is a bar of the series (8 bars) held like its signal: within these bounds
    opens = [Decimal(r[0]) for r in SERIES]
    closes = [Decimal(r[3]) for r in SERIES]
    possible = [float(closes[j + h - 1] / opens[j] - 1) * sign for h, sign in ((4, 1), (2, -1), (1, 1))
                for j in range(len(SERIES) - h + 1)]
    assert min(possible) <= base["overall"]["mean_return"] <= max(possible)
    user, chance = body["by_source"]["user"], base["by_source"]["user"]
    assert user["beats_baseline"] == {"hit_rate": user["hit_rate"] > chance["hit_rate"],
                                      "mean_return": user["mean_return"] > chance["mean_return"]}
    again = (await client.get(f"{SIGNALS}/performance", params={"samples": 10, "seed": 3},
                              headers=auth)).json()
    assert again["baseline"] == base  # seeded: the same figures for the same request
    other = (await client.get(f"{SIGNALS}/performance", params={"samples": 10, "seed": 4},
                              headers=auth)).json()
    assert other["baseline"]["overall"] != base["overall"] and other["overall"] == body["overall"]


async def test_filters_pagination_ownership_and_scopes(client: httpx.AsyncClient, clock: TestClock) -> None:
    alice = await key_user(client)
    bob = await key_user(client)
    made = []
    for i in range(3):
        made.append(await create(client, alice, side="buy", horizon=1 + i))
        clock.advance(1)  # newest first: one second apart
    eth = await create(client, alice, symbol="ETH-USDT", side="sell")
    assert eth["symbol"] == "ETH/USDT"
    first = (await client.get(SIGNALS, params={"limit": 2}, headers=alice)).json()
    assert [s["id"] for s in first["items"]] == [eth["id"], made[2]["id"]] and first["next_cursor"]
    rest = (await client.get(SIGNALS, params={"limit": 2, "cursor": first["next_cursor"]},
                             headers=alice)).json()
    assert [s["id"] for s in rest["items"]] == [made[1]["id"], made[0]["id"]] and rest["next_cursor"] is None
    only_eth = (await client.get(SIGNALS, params={"symbol": "ETH/USDT"}, headers=alice)).json()["items"]
    assert [s["id"] for s in only_eth] == [eth["id"]]
    assert (await client.get(SIGNALS, params={"source": "webhook"}, headers=alice)).json()["items"] == []

    # another user's signal is missing for Bob, alike for read and cancel, and absent from his lists
    for answer in (await client.get(f"{SIGNALS}/{eth['id']}", headers=bob),
                   await client.put(f"{SIGNALS}/{eth['id']}/status", json={"status": "cancelled"},
                                    headers=bob)):
        assert answer.status_code == 404 and answer.json()["code"] == "signal_not_found"
    assert (await client.get(SIGNALS, headers=bob)).json()["items"] == []
    assert (await fetch(client, alice, eth["id"]))["status"] == "active"

    # bad input: 422 problem+json, nothing written
    for body in ({"symbol": "BTC/USDT", "side": "buy", "entry": "100", "stop_loss": "101"},
                 {"symbol": "BTC/USDT", "side": "hold"},
                 {"symbol": "BTC/USDT", "side": "buy", "strength": 1.5},
                 {"symbol": "BTC/USDT", "side": "buy", "source": "model"},
                 {"symbol": "BTC/USDT", "side": "buy", "expires_at": "2020-01-01T00:00:00Z"},
                 {"symbol": "BTC/USDT", "side": "buy", "timeframe": "1m", "expires_at": "2026-01-02T00:00:00Z"}):
        answer = await client.post(SIGNALS, json=body, headers=alice)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    unknown = await client.post(SIGNALS, json={"symbol": "NOPE/USDT", "side": "buy"}, headers=alice)
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_symbol"
    assert len((await client.get(SIGNALS, headers=alice)).json()["items"]) == 4

    # a read-only API key reads signals but cannot create or cancel them
    headers = await key_user(client, ("read",))
    assert (await client.get(SIGNALS, headers=headers)).status_code == 200
    refused = await client.post(SIGNALS, json={"symbol": "BTC/USDT", "side": "buy"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"


async def test_an_unreached_entry_expires_and_a_stop_is_hit(client: httpx.AsyncClient, runtime: Runtime,
                                                            clock: TestClock) -> None:
    auth = await key_user(client)
    await store(runtime, bars(SERIES))
    short = await create(client, auth, side="sell", entry="110", stop_loss="121", take_profit="90", horizon=3,
                         expires_at=(T0 + 10 * HOUR).isoformat())
    clock.advance(timedelta(hours=5).total_seconds())
    await follow(runtime)
    now = await fetch(client, auth, short["id"])
    # 110 is first in bar 3's range (104..110); bar 4's high 121 reaches the sell's stop
    assert (now["status"], now["triggered_at"][:19], now["outcome"], now["exit_price"]) == \
        ("triggered", "2026-01-01T03:00:00", "stop_loss", "121")
    clock.advance(3600)  # bar 5 closed: bars 3..5, close 113 on a sell from 110
    await follow(runtime)
    now = await fetch(client, auth, short["id"])
    assert Decimal(now["horizon_return"]) == (-(Decimal(113) / Decimal(110) - 1)).quantize(Decimal("1e-10"))

