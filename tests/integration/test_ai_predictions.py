"""GET /api/ai/predictions: direction models trained by the ai.train_direction job on real candles
(Coinbase BTC-USD 1h, 3,000 bars), served from the registry beside their baselines' scores."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tests import support
from tests.helpers import bearer, new_user
from tests.market_support import DATA
from tradepilot.ai.direction_job import TRAIN_JOB
from tradepilot.ai.direction_registry import DirectionRegistry, direction_registry
from tradepilot.app import create_app
from tradepilot.jobs.models import Job, JobStatus
from tradepilot.market.importer import import_file
from tradepilot.market.setup import configured_venue
from tradepilot.market.store import CandleStore
from tradepilot.market.types import Bar
from tradepilot.runtime import Runtime

BTC_3000 = DATA / "coinbase_btc_usd_1h" / "BTC_USD-1h-first3000.csv"  # 2017-07-01T11:00Z .. 2017-11-03T10:00Z
LAST_BAR = "2017-11-03T10:00:00Z"
PARAMS = {"symbol": "BTC-USDT", "timeframe": "1h", "horizon": 1}
TARGET = {"symbol": "BTC/USDT", "timeframe": "1h", "horizon": 1}


def _import(store: CandleStore, symbol: str = "BTC/USDT") -> None:
    import_file(store, BTC_3000, symbol=symbol, timeframe="1h", derive=False)


async def _train(runtime: Runtime, payload: dict[str, Any]) -> Job:
    jobs = runtime.services["jobs"]
    async with runtime.db.transaction() as session:
        job = await jobs.enqueue(session, kind=TRAIN_JOB, payload=payload, max_attempts=1)
    await jobs.drain(timeout=120)
    async with runtime.db.session() as session:
        found = await session.get(Job, job.id, populate_existing=True)
    assert found is not None
    return found


async def _predict(client: httpx.AsyncClient, tokens: dict, **params: Any) -> httpx.Response:
    return await client.get("/api/ai/predictions", params={**PARAMS, **params}, headers=bearer(tokens))


async def test_predictions_wait_for_the_training_job_then_stand_beside_the_baselines(
        client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    store = runtime.services["market"].candles
    await asyncio.to_thread(_import, store)
    before = await _predict(client, tokens)
    assert before.status_code == 503 and before.json()["code"] == "model_not_ready"
    assert int(before.headers["Retry-After"]) > 0
    listed = {m["task"]: m for m in (await client.get("/api/ai/models", headers=bearer(tokens))).json()["items"]}
    assert listed["direction"]["status"] == "not_ready"

    job = await _train(runtime, {"targets": [TARGET, {"symbol": "ETH/USDT", "timeframe": "1h", "horizon": 1}]})
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.progress == 1.0 and [t["symbol"] for t in job.result["trained"]] == ["BTC/USDT"]
    assert job.result["skipped"][0]["symbol"] == "ETH/USDT"  # no ETH candles: reported, not fatal

    resp = await _predict(client, tokens)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["symbol"] == "BTC/USDT" and body["as_of"] == LAST_BAR and body["horizon"] == 1
    assert 0 < body["probability_up"] < 1
    assert body["interval"]["low"] <= body["expected_return"] <= body["interval"]["high"]
    assert body["interval"]["low"] < 0 < body["interval"]["high"]
    assert set(body["baselines"]) == {"linear", "always_up", "last_direction"}
    model = body["model"]
    assert model["training_window"] == {"first_bar": "2017-07-01T11:00:00Z", "last_bar": LAST_BAR}
    assert model["bars"] == 3000 and model["test_bars"] > 1000 and model["folds"] == 5 and len(model["features"]) == 16
    # the scores are the walk-forward ones saved with the model, and beats_baselines agrees with them
    saved = direction_registry(runtime).trained()[0]["scores"]
    assert body["scores"] == saved["model"] and body["baselines"]["always_up"] == saved["always_up"]
    naive = [body["baselines"]["always_up"], body["baselines"]["last_direction"]]
    assert body["beats_baselines"]["auc"] == all(body["scores"]["auc"] > b["auc"] for b in naive)
    assert body["beats_baselines"]["brier"] == all(body["scores"]["brier"] < b["brier"] for b in naive)

    listed = [m for m in (await client.get("/api/ai/models", headers=bearer(tokens))).json()["items"]
              if m["task"] == "direction"]
    assert len(listed) == 1 and listed[0]["status"] == "ready" and listed[0]["scores"] == body["scores"]
    assert listed[0]["parameters"]["symbol"] == "BTC/USDT" and listed[0]["parameters"]["trained_at"]
    assert (await client.get("/api/ai/predictions", params=PARAMS)).status_code == 401


async def test_a_prediction_is_made_from_the_latest_closed_bar_only(client: httpx.AsyncClient,
                                                                   runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    store = runtime.services["market"].candles
    await asyncio.to_thread(_import, store)
    assert (await _train(runtime, {"targets": [TARGET]})).status == JobStatus.SUCCEEDED
    first = (await _predict(client, tokens)).json()

    now = runtime.clock.now()
    unclosed = Bar(symbol="BTC/USDT", timeframe="1h", open_time=now.replace(minute=0, second=0, microsecond=0)
                   + timedelta(hours=1), open=Decimal(7293), high=Decimal(9000), low=Decimal(5000), close=Decimal(5000),
                   volume=Decimal(50000))
    await asyncio.to_thread(store.write, "BTC/USDT", "1h", [unclosed])
    same = (await _predict(client, tokens)).json()
    assert same["as_of"] == LAST_BAR and same["probability_up"] == first["probability_up"]
    assert same["expected_return"] == first["expected_return"]

    nxt = datetime(2017, 11, 3, 11, tzinfo=UTC)  # the next closed hour: a 6% drop on heavy volume
    closed = Bar(symbol="BTC/USDT", timeframe="1h", open_time=nxt, open=Decimal("7293.2"), high=Decimal(7300),
                 low=Decimal(6800), close=Decimal(6850), volume=Decimal(9000))
    await asyncio.to_thread(store.write, "BTC/USDT", "1h", [closed])
    moved = (await _predict(client, tokens)).json()
    assert moved["as_of"] == "2017-11-03T11:00:00Z" and moved["last_close"] == 6850.0
    assert (moved["probability_up"], moved["expected_return"]) != (first["probability_up"], first["expected_return"])
    assert moved["model"] == first["model"]  # the same model, a newer bar


async def test_unknown_symbols_short_histories_and_refused_model_files(client: httpx.AsyncClient,
                                                                      runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    store = runtime.services["market"].candles
    await asyncio.to_thread(_import, store)
    assert (await _train(runtime, {"targets": [TARGET]})).status == JobStatus.SUCCEEDED
    assert (await _predict(client, tokens)).status_code == 200

    unknown = await _predict(client, tokens, symbol="NOPE/USDT")
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_symbol"
    for bad in ({"horizon": 0}, {"timeframe": "2h"}, {"horizon": "x"}):
        assert (await _predict(client, tokens, **bad)).status_code == 422, bad

    # a model for ETH/USDT (the BTC one, saved by the registry) but only 40 ETH bars stored
    registry = direction_registry(runtime)
    btc = registry.key(store.venue, "BTC/USDT", "1h", 1)
    eth = registry.key(store.venue, "ETH/USDT", "1h", 1)
    model = registry.load(btc)
    assert model is not None
    registry.save(eth, model)
    bars = store.read_bars("BTC/USDT", "1h", limit=40)
    await asyncio.to_thread(store.write, "ETH/USDT", "1h", [dataclasses.replace(b, symbol="ETH/USDT") for b in bars])
    short = await _predict(client, tokens, symbol="ETH/USDT")
    assert short.status_code == 422 and short.json()["code"] == "insufficient_data"

    path = registry.path(btc)
    good = path.read_bytes()
    for foreign in (good.replace(b'"horizon": 1', b'"horizon": 2', 1),  # edited: the HMAC no longer matches
                    pickle.dumps({"kind": "lightgbm_direction"}),  # never unpickled
                    _signed_elsewhere(model, btc, registry.root.parent / "elsewhere")):
        assert foreign != good
        path.write_bytes(foreign)
        refused = await _predict(client, tokens)
        assert refused.status_code == 503 and refused.json()["code"] == "model_not_ready", foreign[:40]
    path.write_bytes(good)
    assert (await _predict(client, tokens)).status_code == 200


def _signed_elsewhere(model: Any, key: Any, root: Path) -> bytes:
    """A well-formed model file written by another install (another secret key)."""
    other = DirectionRegistry(root, b"another install's key" + bytes(11))
    return other.save(key, model).read_bytes()


async def _start_and_stop(settings: Any) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        jobs = app.state.runtime.services["jobs"]
        if jobs.executes:
            await jobs.drain(timeout=120)


async def _training_jobs(settings: Any) -> list[Job]:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    try:
        async with runtime.db.session() as session:
            return list((await session.execute(select(Job).where(Job.kind == TRAIN_JOB))).scalars().all())
    finally:
        await runtime.db.dispose()


async def test_a_fresh_install_enqueues_one_training_at_start_up(database_url: str, tmp_path: Path) -> None:
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", ai_direction_train_on_start=True,
                                     ai_direction_symbols="BTC/USDT")
    store = CandleStore.for_settings(settings, configured_venue(settings))
    await asyncio.to_thread(_import, store)
    recording_only = settings.model_copy(update={"jobs_inprocess": False})
    await _start_and_stop(recording_only)
    await _start_and_stop(recording_only)  # restarted before the job ran: still one
    (job,) = await _training_jobs(settings)
    assert job.status == JobStatus.QUEUED and job.payload == {"reason": "first_start"}

    await _start_and_stop(settings)  # this one runs it
    (job,) = await _training_jobs(settings)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert DirectionRegistry.for_settings(settings).exists(
        DirectionRegistry.key(store.venue, "BTC/USDT", "1h", 1))
    await _start_and_stop(settings)  # a model exists: no more start-up training
    assert len(await _training_jobs(settings)) == 1


async def test_the_first_training_waits_for_history_instead_of_failing(database_url: str, tmp_path: Path) -> None:
    settings = support.make_settings(database_url, data_dir=tmp_path / "var", ai_direction_train_on_start=True,
                                     ai_direction_symbols="BTC/USDT,ETH/USDT")
    await _start_and_stop(settings)  # nothing stored yet (the back-fill has not written any bar)
    (job,) = await _training_jobs(settings)
    assert job.status == JobStatus.QUEUED and job.attempts == 1 and "no history" in (job.error or "")
    assert job.run_after >= job.created_at + timedelta(seconds=250)  # tried again in 5 minutes, not at once
    assert job.max_attempts > 10
