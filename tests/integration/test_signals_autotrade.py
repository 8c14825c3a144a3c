"""The plan's auto-trading: an AI-signals run with ``signals: "model"`` asks the direction model
(trained by its job on real Coinbase BTC/USD hourly candles) at each closed bar, stores the
model's signal and trades it through the runner's order path — and, when a risk check refuses
the order, records the refusal and writes no order.

The clock is the test clock, set just after the training window; the run's bars are the
same file's next real bars, written to the store as the feed owner would and closed by
advancing the clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.orders_support import Market, wait_for
from tests.integration.signals_support import SIGNALS, key_user, strategy_runs_app
from tests.integration.strategy_runs_support import run_orders, run_row
from tests.integration.test_ai_predictions import BTC_3000, TARGET, _train
from tradepilot.ai.direction_registry import direction_registry
from tradepilot.ai.market_candles import candles_of
from tradepilot.ai.predictions import PREDICTION_BARS
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock
from tradepilot.core.outbox_models import OutboxEvent
from tradepilot.jobs.models import JobStatus
from tradepilot.market.frame import to_ms
from tradepilot.market.importer import read_bars
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime

ROWS = read_bars(BTC_3000, "BTC/USDT", "1h")  # 2017-07-01T11:00Z .. 2017-11-03T10:00Z, no gaps
TRAINED = 2900  # the model is trained on the first 2,900 bars
FIRST = 2906  # the run starts after bar 2905 and trades the next ones
MIN_STRENGTH = 0.03  # on these bars the model's strength is below it on some bars, above on most
AUTO = {"name": "auto-trading", "strategy": "ai_signals", "symbols": ["BTC/USDT"], "timeframe": "1h",
        "params": {"signals": "model", "horizon": 1, "min_strength": MIN_STRENGTH, "size": 0.1}}
BOOK = ([("6100", "50")], [("6110", "50")])


@pytest.fixture
def clock() -> TestClock:
    return TestClock(ROWS[TRAINED].open_time)  # the last bar of the training window has just closed


@pytest.fixture
async def app(settings: Settings, clock: TestClock):  # type: ignore[no-untyped-def]
    async with strategy_runs_app(settings, clock) as application:
        yield application


async def _write(runtime: Runtime, bars: list[Bar]) -> None:
    await asyncio.to_thread(runtime.services["market"].candles.write, "BTC/USDT", "1h", bars)
    runtime.services["strategy_runs"].wake()


async def _ready(client: httpx.AsyncClient, runtime: Runtime, clock: TestClock, auth: dict) -> dict:
    """The trained model, the book, and the AI-signals configuration (refused to start before the model)."""
    await _write(runtime, ROWS[:TRAINED])
    market = Market(runtime)
    await market.book(*BOOK)
    await market.trade("6105", "0.1")
    config = await client.post("/api/strategies", json=AUTO, headers=auth)
    assert config.status_code == 201, config.text
    early = await client.post(f"/api/strategies/{config.json()['id']}/start", headers=auth)
    assert early.status_code == 503 and early.json()["code"] == "model_not_ready", early.text
    assert (await client.get("/api/strategies/runs", headers=auth)).json()["items"] == []
    job = await _train(runtime, {"targets": [TARGET]})
    assert job.status == JobStatus.SUCCEEDED, job.error
    await _write(runtime, ROWS[TRAINED:FIRST])  # history before the run starts: never traded
    clock.advance(3600 * (FIRST - TRAINED))
    return config.json()  # type: ignore[no-any-return]


async def _start(client: httpx.AsyncClient, auth: dict, config: dict) -> dict:
    run = await client.post(f"/api/strategies/{config['id']}/start", headers=auth)
    assert run.status_code == 201, run.text
    assert run.json()["last_bar_at"].startswith(ROWS[FIRST - 1].open_time.isoformat()[:19])
    return run.json()  # type: ignore[no-any-return]


async def _close(runtime: Runtime, clock: TestClock, run_id: str, first: int, count: int) -> None:
    """Bars ``first`` .. ``first + count - 1`` of the file written and closed; until the run processed them."""
    await _write(runtime, ROWS[first:first + count])
    clock.advance(3600 * count)
    last = ROWS[first + count - 1].open_time

    async def done() -> bool:
        row = await run_row(runtime, run_id)
        return row.last_bar_at is not None and row.last_bar_at >= last

    await wait_for(done, f"the run to process the bar of {last:%H:%M}", timeout=60)


def _expected_probabilities(runtime: Runtime, indices: range) -> dict[int, float]:
    """P(up) of each bar from the file's bars up to it, by the registry's model (not the store's read)."""
    registry = direction_registry(runtime)
    model = registry.load(registry.key(runtime.services["market"].venue, "BTC/USDT", "1h", 1))
    assert model is not None
    return {to_ms(ROWS[k].open_time): model.predict(candles_of(ROWS[k + 1 - PREDICTION_BARS:k + 1])).probability_up
            for k in indices}


async def _model_signals(client: httpx.AsyncClient, auth: dict) -> dict[int, dict[str, Any]]:
    items = (await client.get(SIGNALS, params={"source": "model", "limit": 100}, headers=auth)).json()["items"]
    return {to_ms(datetime.fromisoformat(s["details"]["as_of"])): s for s in items}


async def _run_events(runtime: Runtime, user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with runtime.db.read() as session:
        return [e.payload for e in await session.scalars(select(OutboxEvent).where(
            OutboxEvent.topic == f"user.{user_id}.strategies", OutboxEvent.type == "strategy_run.order")
            .order_by(OutboxEvent.seq))]


async def test_the_ai_signals_run_asks_the_model_at_each_closed_bar_and_trades_its_signals(
        client: httpx.AsyncClient, runtime: Runtime, clock: TestClock) -> None:
    auth = await key_user(client)
    config = await _ready(client, runtime, clock, auth)
    run = await _start(client, auth, config)
    await _close(runtime, clock, run["id"], FIRST, 3)  # three bars at once: the run catches up
    for k in range(FIRST + 3, FIRST + 10):
        await _close(runtime, clock, run["id"], k, 1)

    # a model signal for each bar whose forecast clears the threshold, from the bars up to that
    # bar (no look-ahead: the three caught-up bars were in the store together, each saw its past)
    expected = _expected_probabilities(runtime, range(FIRST, FIRST + 10))
    strong = {ms for ms, p in expected.items() if abs(2 * p - 1) >= MIN_STRENGTH}
    stored = await _model_signals(client, auth)
    assert set(stored) == strong and len(strong) < len(expected)  # the weak ones are not stored
    for bar_ms in strong:
        signal, p = stored[bar_ms], expected[bar_ms]
        assert signal["details"]["probability_up"] == pytest.approx(p, abs=1e-6)
        assert signal["side"] == ("buy" if p >= 0.5 else "sell")
        assert signal["strength"] == pytest.approx(abs(2 * p - 1), abs=1e-6)
        assert signal["details"]["strategy_run_id"] == run["id"] and signal["horizon"] == 1
        assert f"P(up) {p:.3f}" in signal["reason"] and signal["entry"] is None
    assert {s["side"] for s in stored.values()} == {"buy", "sell"}

    # traded as the strategy's rules say: flat, a buy signal buys (a sell signal does nothing);
    # long, it sells at the latest when the signal's 1-bar horizon has passed
    wanted, held = [], False
    for bar_ms in sorted(expected):
        if held:
            wanted.append((bar_ms, "sell"))
            held = False
        elif bar_ms in stored and stored[bar_ms]["side"] == "buy":
            wanted.append((bar_ms, "buy"))
            held = True
    orders = await run_orders(runtime, run["id"])
    assert [(int(o.client_order_id.split("-")[2]), o.side) for o in orders] == wanted
    assert all(o.status == "filled" and o.type == "market" for o in orders)
    row = await run_row(runtime, run["id"])
    assert row.orders_placed == len(wanted) and row.orders_rejected == 0
    bought = [str(stored[ms]["id"]) for ms, side in wanted if side == "buy"]
    assert [s for s in row.state["strategy"]["used"] if s in bought] == bought


async def test_an_ai_signals_order_refused_by_a_risk_check_is_recorded_and_nothing_is_written(
        client: httpx.AsyncClient, runtime: Runtime, clock: TestClock) -> None:
    auth = await key_user(client)
    config = await _ready(client, runtime, clock, auth)
    # the entry spends 10 % of 10,000 USDT: above this user's own limit of 500 per order
    limited = await client.put("/api/users/me/settings", json={"risk": {"max_order_notional": "500"}}, headers=auth)
    assert limited.status_code == 200, limited.text
    [account] = (await client.get("/api/trading/accounts", headers=auth)).json()["items"]
    before = (await client.get(f"/api/trading/accounts/{account['id']}", headers=auth)).json()["balances"]
    run = await _start(client, auth, config)
    for k in range(FIRST, FIRST + 6):
        await _close(runtime, clock, run["id"], k, 1)

    stored = await _model_signals(client, auth)
    buys = [ms for ms in sorted(stored) if stored[ms]["side"] == "buy"]
    assert buys  # the model's signals are its record, stored whatever became of the trade
    row = await run_row(runtime, run["id"])
    assert row.status == "running" and row.orders_placed == 0 and row.orders_rejected == len(buys)
    assert await run_orders(runtime, run["id"]) == []
    refusals = [e["rejected"] for e in await _run_events(runtime, row.user_id)]
    assert [r["code"] for r in refusals] == ["order_notional_above_limit"] * len(buys)
    assert all(r["symbol"] == "BTC/USDT" for r in refusals)
    after = (await client.get(f"/api/trading/accounts/{account['id']}", headers=auth)).json()["balances"]
    assert after == before  # nothing reserved, nothing spent
    assert (await client.get("/api/trading/positions", headers=auth)).json()["items"] == []
    assert (await client.get("/api/trading/orders", headers=auth)).json()["items"] == []
