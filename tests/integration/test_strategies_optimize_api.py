"""/api/strategies/{id}/optimize and …/optimizations through the app, on SQLite and PostgreSQL.

The optimisation runs as a job of the core on real Coinbase candles imported into the store;
its report must agree with backtests run directly on the same bars.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx

from tests.helpers import bearer, new_user
from tests.integration.jobs_support import jobs_of, load_job, wait_until
from tests.integration.strategies_support import PERIOD, create_strategy, import_btc_1h
from tradepilot.runtime import Runtime
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.catalog import build_strategy
from tradepilot.strategies.optimize.windows import make_windows

GRID = {"fast": {"low": 4, "high": 16, "step": 4}, "slow": {"low": 20, "high": 60, "step": 10}}
OPTIMIZE = {**PERIOD, "sampler": "grid", "space": GRID, "objective": "sharpe", "min_trades": 1, "walk_forward": 2,
            "in_sample": 0.7, "taker_fee": "0.001"}


async def _bars(runtime: Runtime) -> Bars:
    store = runtime.services["market"].candles
    frame = await asyncio.to_thread(store.read, "BTC/USDT", "1h", datetime.fromisoformat(PERIOD["start"]),
                                    datetime.fromisoformat(PERIOD["end"]))
    return Bars.from_frame("BTC/USDT", frame)


async def test_a_walk_forward_grid_optimisation_as_a_job(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, tokens)
    resp = await client.post(f"/api/strategies/{strategy['id']}/optimize", json=OPTIMIZE, headers=auth)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["n_trials"] == 20 and accepted["status"] == "queued" and accepted["estimated_bars"] == 744
    url = f"/api/strategies/{strategy['id']}/optimizations/{accepted['optimization_id']}"
    assert resp.headers["Location"] == url
    await jobs_of(runtime).drain()

    job = await load_job(runtime, uuid.UUID(accepted["job_id"]))
    assert job.status == "succeeded" and job.progress == 1.0 and job.progress_message.startswith("window 2/2")
    opt = (await client.get(url, params={"trials": "true"}, headers=auth)).json()
    assert opt["status"] == "succeeded" and opt["progress"] == 1.0 and opt["error"] is None
    assert opt["request"]["space"]["fast"] == {"low": 4, "high": 16, "step": 4, "log": False}
    report = opt["report"]
    assert len(report["windows"]) == 2 and report["objective"] == "sharpe" and report["workers"] == 1
    grid = {(f, s) for f in (4, 8, 12, 16) for s in (20, 30, 40, 50, 60)}
    assert [{(t["params"]["fast"], t["params"]["slow"]) for t in w} for w in opt["trials"]] == [grid, grid]

    bars = await _bars(runtime)
    config = BacktestConfig(initial_cash=10_000, maker_fee=0.001, taker_fee=0.001)
    for row, window in zip(report["windows"], make_windows(len(bars), 2, 0.7), strict=True):
        # in-sample and out-of-sample side by side, each equal to a direct backtest of the best parameters
        best = build_strategy("sma_cross", row["best_params"])
        ins = run_backtest(best, bars.take(slice(*window.in_sample)), config)
        oos = run_backtest(best, bars.take(slice(*window.out_of_sample)), config)
        assert row["in_sample_metrics"]["sharpe"] == ins.metrics.sharpe
        assert row["out_of_sample_metrics"]["sharpe"] == oos.metrics.sharpe
        assert row["out_of_sample_metrics"]["trades"] == len(oos.closed_trades)
        assert row["in_sample"]["bars"] == window.in_sample[1] - window.in_sample[0]
        assert row["in_sample"]["end"] < row["out_of_sample"]["start"]
        values = [t["value"] for t in opt["trials"][row["index"]] if t["outcome"] == "complete"]
        assert row["in_sample_metrics"]["objective"] == max(values)
    assert report["best_params"] == report["windows"][-1]["best_params"]
    assert job.result is not None and job.result["best_params"] == report["best_params"]

    listed = (await client.get(f"/api/strategies/{strategy['id']}/optimizations", headers=auth)).json()
    assert [o["id"] for o in listed["items"]] == [accepted["optimization_id"]] and listed["items"][0]["trials"] is None
    again = await client.post(f"{url}/cancel", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "optimization_finished"
    # deleting the strategy deletes its optimisations
    assert (await client.delete(f"/api/strategies/{strategy['id']}", headers=auth)).status_code == 204
    assert (await client.get(url, headers=auth)).status_code == 404


async def test_bad_optimisation_requests_are_422_with_the_path(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens)
    url = f"/api/strategies/{strategy['id']}/optimize"

    async def problem(body: dict, code: str) -> dict:
        resp = await client.post(url, json=body, headers=auth)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json" and resp.json()["code"] == code
        return resp.json()  # type: ignore[no-any-return]

    unknown = await problem({**OPTIMIZE, "space": {**GRID, "fsat": {"low": 1, "high": 2}}}, "invalid_search_space")
    assert [e["field"] for e in unknown["errors"]] == ["space.fsat"]
    backwards = await problem({**OPTIMIZE, "space": {"fast": {"low": 20, "high": 5}}}, "invalid_search_space")
    assert backwards["errors"][0]["field"] == "space.fast.high"
    bounds = await problem({**OPTIMIZE, "space": {"slow": {"low": 1, "high": 50}}}, "invalid_search_space")
    assert bounds["errors"][0]["field"] == "space.slow.low"  # slow ≥ 2 in the parameter schema
    no_step = await problem({**OPTIMIZE, "space": {"stop_loss": {"low": 0.01, "high": 0.1}}}, "grid_needs_step")
    assert no_step["errors"][0]["field"] == "space.stop_loss.step"
    objective = await problem({**OPTIMIZE, "objective": "profit"}, "validation_error")
    assert objective["errors"][0]["field"] == "objective"
    await problem({**OPTIMIZE, "start": PERIOD["end"], "end": PERIOD["start"]}, "invalid_range")
    await problem({**OPTIMIZE, "start": "2017-07-01T00:00:00Z", "end": "2017-07-02T00:00:00Z"}, "period_too_short")
    too_many = await problem({**OPTIMIZE, "sampler": "tpe", "n_trials": 150}, "optimization_too_large")
    assert too_many["limit"] == 200 and too_many["trials"] == 300  # free plan; 150 trials x 2 windows
    await problem({**OPTIMIZE, "taker_fee": "2"}, "invalid_backtest_settings")
    assert (await client.get(f"/api/strategies/{strategy['id']}/optimizations", headers=auth)).json()["items"] == []


async def test_another_users_ids_are_404_and_reads_need_only_the_read_scope(client: httpx.AsyncClient,
                                                                            runtime: Runtime) -> None:
    _, owner = await new_user(client)
    _, intruder = await new_user(client)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, owner)
    headers = {**bearer(owner), "Idempotency-Key": "opt-1"}
    first = await client.post(f"/api/strategies/{strategy['id']}/optimize", json=OPTIMIZE, headers=headers)
    replay = await client.post(f"/api/strategies/{strategy['id']}/optimize", json=OPTIMIZE, headers=headers)
    assert first.status_code == replay.status_code == 202 and first.json() == replay.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    await jobs_of(runtime).drain()
    sid, oid = strategy["id"], first.json()["optimization_id"]
    mine = await create_strategy(client, intruder)
    for method, url, body in [("POST", f"/api/strategies/{sid}/optimize", OPTIMIZE),
                              ("GET", f"/api/strategies/{sid}/optimizations", None),
                              ("GET", f"/api/strategies/{sid}/optimizations/{oid}", None),
                              ("POST", f"/api/strategies/{sid}/optimizations/{oid}/cancel", None),
                              ("GET", f"/api/strategies/{mine['id']}/optimizations/{oid}", None),
                              ("GET", f"/api/strategies/{mine['id']}/optimizations/{uuid.uuid4()}", None)]:
        resp = await client.request(method, url, json=body, headers=bearer(intruder))
        assert resp.status_code == 404, (method, url, resp.text)
        assert resp.json()["code"] in ("strategy_not_found", "optimization_not_found")
    owned = (await client.get(f"/api/strategies/{sid}/optimizations", headers=bearer(owner))).json()["items"]
    assert [o["id"] for o in owned] == [oid] and owned[0]["status"] == "succeeded"  # one, despite the replay


async def test_progress_is_reported_and_a_running_optimisation_can_be_cancelled(client: httpx.AsyncClient,
                                                                                runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, tokens)
    body = {**OPTIMIZE, "sampler": "tpe", "n_trials": 100, "walk_forward": 1,
            "space": {"fast": {"low": 2, "high": 40}, "slow": {"low": 41, "high": 200}}}
    accepted = (await client.post(f"/api/strategies/{strategy['id']}/optimize", json=body, headers=auth)).json()
    url = f"/api/strategies/{strategy['id']}/optimizations/{accepted['optimization_id']}"

    async def started() -> dict | None:
        view = (await client.get(url, headers=auth)).json()
        return view if view["status"] == "running" and (view["progress"] or 0) > 0.05 else None

    running = await wait_until(started, timeout=120)
    assert running["progress_message"].startswith("window 1/1: ") and running["report"] is None
    cancel = await client.post(f"{url}/cancel", headers=auth)
    assert cancel.status_code == 200, cancel.text

    async def cancelled() -> dict | None:
        view = (await client.get(url, params={"trials": "true"}, headers=auth)).json()
        return view if view["status"] == "cancelled" else None

    done = await wait_until(cancelled, timeout=120)
    assert done["error"] == "cancelled" and done["report"] is None and done["finished_at"] is not None
    async def job_stopped():  # type: ignore[no-untyped-def]
        # the row is cancelled at once; the job ends when its batch in flight is done
        job = await load_job(runtime, uuid.UUID(accepted["job_id"]))
        return job if job.status == "cancelled" else None

    job = await wait_until(job_stopped, timeout=120)
    assert 0.05 < job.progress < 1.0
