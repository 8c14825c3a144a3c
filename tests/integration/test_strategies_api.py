"""/api/strategies and /api/ai/backtest-strategy through the app, on SQLite and PostgreSQL.

The backtest runs as a job of the core on real Coinbase candles imported into the store, and
its summary must equal running the backtester directly on the same bars.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx

from tests.helpers import bearer, new_user
from tests.integration.admin_support import create_key
from tests.integration.jobs_support import jobs_of, load_job
from tests.integration.strategies_support import PERIOD, SMA, create_strategy, import_btc_1h
from tradepilot.runtime import Runtime
from tradepilot.strategies.backtest import BacktestConfig, run_backtest
from tradepilot.strategies.bars import Bars
from tradepilot.strategies.builtins import BUILTINS
from tradepilot.strategies.catalog import build_strategy


async def test_the_catalog_lists_every_builtin_with_a_json_schema(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    assert (await client.get("/api/strategies/catalog")).status_code == 401
    resp = await client.get("/api/strategies/catalog", headers=bearer(tokens))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    by_name = {s["name"]: s for s in body["strategies"]}
    assert {cls.name for cls in BUILTINS} | {"rules"} <= set(by_name)
    for cls in BUILTINS:
        entry = by_name[cls.name]
        assert entry["source"] == "builtin" and entry["kind"] == cls.kind and entry["title"] == cls.title
        assert entry["params_schema"]["type"] == "object" and entry["params_schema"]["properties"]
    assert by_name["sma_cross"]["params_schema"]["properties"]["fast"]["default"] == 10
    assert body["rules_schema"]["required"] == ["entry"] and "Condition" in body["rules_schema"]["$defs"]


async def test_parameters_are_validated_with_the_field_path(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    bad = await client.post("/api/strategies", json={**SMA, "params": {"fast": "ten", "slow": 30, "nope": 1}},
                            headers=auth)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["code"] == "invalid_strategy_params"
    assert {e["field"] for e in bad.json()["errors"]} == {"params.fast", "params.nope"}
    ordered = await client.post("/api/strategies", json={**SMA, "params": {"fast": 30, "slow": 10}}, headers=auth)
    assert ordered.status_code == 422 and "must be less than" in ordered.json()["errors"][0]["message"]
    unknown = await client.post("/api/strategies", json={**SMA, "strategy": "moon_shot"}, headers=auth)
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_strategy"
    assert unknown.json()["errors"][0]["field"] == "strategy"
    rules = {"indicators": {"fast": {"type": "sma", "period": 10}},
             "entry": {"all": [{"crosses_above": ["fsat", "close"]}]}, "exit": {"lt": ["close", "fast"]}}
    typo = await client.post("/api/strategies", json={**SMA, "strategy": "rules", "params": rules}, headers=auth)
    assert typo.status_code == 422 and typo.json()["code"] == "invalid_strategy_params"
    assert typo.json()["errors"][0]["field"] == "params.entry.all.0.crosses_above.0"
    symbol = await client.post("/api/strategies", json={**SMA, "symbols": ["not a symbol"]}, headers=auth)
    assert symbol.status_code == 422 and symbol.json()["code"] == "validation_error"
    account = await client.post("/api/strategies", json={**SMA, "account_id": str(uuid.uuid4())}, headers=auth)
    assert account.status_code == 404 and account.json()["code"] == "account_not_found"
    # a valid rule document is stored as given; decimals arrive as numbers
    rules["entry"] = {"crosses_above": ["close", "fast"]}
    rules["stop_loss"] = 0.05
    ok = await client.post("/api/strategies", json={**SMA, "strategy": "rules", "params": rules}, headers=auth)
    assert ok.status_code == 201, ok.text
    assert ok.json()["params"]["stop_loss"] == 0.05 and ok.json()["params"]["entry"] == rules["entry"]


async def test_create_list_get_replace_clone_delete(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    first = await create_strategy(client, tokens, {**SMA, "symbols": ["btc-usdt"]})
    assert first["symbols"] == ["BTC/USDT"] and first["status"] == "idle"
    assert first["params"] == {"fast": 10, "slow": 30, "source": "close", "size": 1.0, "stop_loss": None,
                               "take_profit": None, "trailing_stop": None}  # defaults filled in
    second = await create_strategy(client, tokens, {**SMA, "name": "EMA", "strategy": "ema_cross"})
    third = await create_strategy(client, tokens, {**SMA, "name": "RSI", "strategy": "rsi_reversion", "params": {}})
    page = (await client.get("/api/strategies", params={"limit": 2}, headers=auth)).json()
    assert [s["id"] for s in page["items"]] == [third["id"], second["id"]] and page["next_cursor"]
    rest = (await client.get("/api/strategies", params={"limit": 2, "cursor": page["next_cursor"]},
                             headers=auth)).json()
    assert [s["id"] for s in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    got = await client.get(f"/api/strategies/{first['id']}", headers=auth)
    assert got.status_code == 200 and got.json() == first
    replaced = await client.put(f"/api/strategies/{first['id']}", headers=auth,
                                json={**SMA, "name": "SMA 5/20", "params": {"fast": 5, "slow": 20}})
    assert replaced.status_code == 200 and replaced.json()["params"]["fast"] == 5
    assert replaced.json()["name"] == "SMA 5/20" and replaced.json()["created_at"] == first["created_at"]
    refused = await client.put(f"/api/strategies/{first['id']}", headers=auth, json={**SMA, "params": {"slow": 0}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "params.slow"
    assert (await client.get(f"/api/strategies/{first['id']}", headers=auth)).json()["params"]["fast"] == 5
    clone = await client.post(f"/api/strategies/{first['id']}/clone", headers=auth)
    assert clone.status_code == 201 and clone.json()["name"] == "SMA 5/20 (copy)"
    assert clone.json()["params"] == replaced.json()["params"] and clone.json()["id"] != first["id"]
    named = await client.post(f"/api/strategies/{first['id']}/clone", json={"name": "mine"}, headers=auth)
    assert named.status_code == 201 and named.json()["name"] == "mine"
    deleted = await client.delete(f"/api/strategies/{first['id']}", headers=auth)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/strategies/{first['id']}", headers=auth)
    assert gone.status_code == 404 and gone.json()["code"] == "strategy_not_found"
    assert (await client.get(f"/api/strategies/{clone.json()['id']}", headers=auth)).status_code == 200


async def test_writes_need_the_trade_scope_and_posts_are_idempotent(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    read_key = await create_key(client, tokens, ["read"])
    as_key = {"X-API-Key": read_key["key"]}
    assert (await client.get("/api/strategies", headers=as_key)).status_code == 200
    refused = await client.post("/api/strategies", json=SMA, headers=as_key)
    assert refused.status_code == 403
    headers = {**bearer(tokens), "Idempotency-Key": "create-sma-1"}
    one = await client.post("/api/strategies", json=SMA, headers=headers)
    two = await client.post("/api/strategies", json=SMA, headers=headers)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert two.headers["Idempotent-Replayed"] == "true"
    listed = (await client.get("/api/strategies", headers=bearer(tokens))).json()["items"]
    assert len(listed) == 1
    other = await client.post("/api/strategies", json={**SMA, "name": "other"}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_another_users_ids_are_404_on_every_route(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, owner = await new_user(client)
    _, intruder = await new_user(client)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, owner)
    accepted = (await client.post(f"/api/strategies/{strategy['id']}/backtest", json=PERIOD,
                                  headers=bearer(owner))).json()
    await jobs_of(runtime).drain()
    sid, bid = strategy["id"], accepted["backtest_id"]
    mine = await create_strategy(client, intruder)
    routes = [("GET", f"/api/strategies/{sid}", None), ("PUT", f"/api/strategies/{sid}", SMA),
              ("DELETE", f"/api/strategies/{sid}", None), ("POST", f"/api/strategies/{sid}/clone", None),
              ("POST", f"/api/strategies/{sid}/backtest", PERIOD), ("GET", f"/api/strategies/{sid}/backtests", None),
              ("GET", f"/api/strategies/{sid}/backtests/{bid}", None),
              ("GET", f"/api/strategies/{sid}/backtests/{bid}/report", None),
              ("GET", f"/api/strategies/{sid}/performance", None),
              # the intruder's own strategy with the owner's backtest id
              ("GET", f"/api/strategies/{mine['id']}/backtests/{bid}", None),
              ("GET", f"/api/strategies/{mine['id']}/backtests/{bid}/report?format=png", None),
              ("GET", f"/api/strategies/{uuid.uuid4()}", None)]
    for method, url, body in routes:
        resp = await client.request(method, url, json=body, headers=bearer(intruder))
        assert resp.status_code == 404, (method, url, resp.text)
        assert resp.json()["code"] in ("strategy_not_found", "backtest_not_found"), (method, url)
    # nothing of the owner's changed
    still = await client.get(f"/api/strategies/{sid}/backtests/{bid}", headers=bearer(owner))
    assert still.status_code == 200 and still.json()["status"] == "succeeded"
    assert len((await client.get("/api/strategies", headers=bearer(intruder))).json()["items"]) == 1


async def test_a_backtest_job_on_real_candles_matches_the_backtester(client: httpx.AsyncClient,
                                                                     runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, tokens)
    body = {**PERIOD, "initial_cash": "5000", "taker_fee": 0.002, "slippage": "0.0005"}
    resp = await client.post(f"/api/strategies/{strategy['id']}/backtest", json=body, headers=auth)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["status"] == "queued" and accepted["strategy_id"] == strategy["id"]
    assert accepted["estimated_bars"] == 31 * 24
    assert resp.headers["Location"] == f"/api/strategies/{strategy['id']}/backtests/{accepted['backtest_id']}"
    await jobs_of(runtime).drain()

    job = await load_job(runtime, uuid.UUID(accepted["job_id"]))
    assert job.status == "succeeded" and job.progress == 1.0 and job.user_id is not None
    assert job.progress_message in ("writing the report", "simulating")  # reported by the handler
    url = f"/api/strategies/{strategy['id']}/backtests/{accepted['backtest_id']}"
    run = (await client.get(url, headers=auth)).json()
    assert run["status"] == "succeeded" and run["progress"] == 1.0 and run["error"] is None
    assert run["settings"] == {"initial_cash": "5000", "maker_fee": "0.001", "taker_fee": "0.002",
                               "slippage": "0.0005", "volume_cap": None}
    summary = run["summary"]
    assert run["bars"] == summary["bars"] == 720 and summary["path"] == "fast"

    # the same bars through the backtester directly
    store = runtime.services["market"].candles
    frame = await asyncio.to_thread(store.read, "BTC/USDT", "1h", datetime.fromisoformat("2017-07-01T00:00:00+00:00"),
                                    datetime.fromisoformat("2017-08-01T00:00:00+00:00"))
    direct = run_backtest(build_strategy("sma_cross", {"fast": 10, "slow": 30}), Bars.from_frame("BTC/USDT", frame),
                          BacktestConfig(initial_cash=5000, maker_fee=0.001, taker_fee=0.002, slippage=0.0005),
                          timeframe="1h")
    assert summary["final_equity"] == direct.final_equity
    assert summary["trades"] == len(direct.closed_trades) > 0
    assert summary["sharpe"] == direct.summary()["sharpe"] and summary["max_drawdown"] is not None
    assert job.result is not None and job.result["final_equity"] == direct.final_equity

    html = await client.get(run["report"]["html"], headers=auth)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert html.text.count('src="data:image/png;base64,') >= 2 and "sma_cross" in html.text
    png = await client.get(run["report"]["png"], headers=auth)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    listed = (await client.get(f"/api/strategies/{strategy['id']}/backtests", headers=auth)).json()
    assert [b["id"] for b in listed["items"]] == [accepted["backtest_id"]]
    perf = (await client.get(f"/api/strategies/{strategy['id']}/performance", headers=auth)).json()
    assert perf["backtest"]["id"] == accepted["backtest_id"]
    assert perf["backtest"]["summary"]["final_equity"] == direct.final_equity

    # deleting the strategy removes its backtests and their report files
    folder = runtime.settings.data_dir / "backtests"
    assert any(folder.rglob("report.html"))
    assert (await client.delete(f"/api/strategies/{strategy['id']}", headers=auth)).status_code == 204
    assert not any(folder.rglob("report.html"))


async def test_a_backtest_without_candles_fails_with_a_reason(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens, {**SMA, "symbols": ["ETH/USDT"]})
    accepted = (await client.post(f"/api/strategies/{strategy['id']}/backtest", json=PERIOD, headers=auth)).json()
    await jobs_of(runtime).drain()
    run = (await client.get(f"/api/strategies/{strategy['id']}/backtests/{accepted['backtest_id']}",
                            headers=auth)).json()
    assert run["status"] == "failed" and "0 bars stored" in run["error"] and run["summary"] is None
    assert (await load_job(runtime, uuid.UUID(accepted["job_id"]))).attempts == 1  # permanent: not retried
    report = await client.get(f"/api/strategies/{strategy['id']}/backtests/{accepted['backtest_id']}/report",
                              headers=auth)
    assert report.status_code == 409 and report.json()["code"] == "backtest_not_finished"
    perf = (await client.get(f"/api/strategies/{strategy['id']}/performance", headers=auth)).json()
    assert perf == {"strategy_id": strategy["id"], "backtest": None}


async def test_bad_backtest_requests_are_422(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens)
    url = f"/api/strategies/{strategy['id']}/backtest"
    backwards = await client.post(url, json={"start": PERIOD["end"], "end": PERIOD["start"]}, headers=auth)
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_range"
    fee = await client.post(url, json={**PERIOD, "taker_fee": "1.5"}, headers=auth)
    assert fee.status_code == 422 and fee.json()["code"] == "invalid_backtest_settings"
    missing = await client.post(url, json={"end": PERIOD["end"]}, headers=auth)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "start"


async def test_the_ai_endpoint_backtests_an_inline_strategy(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    await import_btc_1h(runtime)
    spec = {k: SMA[k] for k in ("strategy", "params", "symbols", "timeframe")}
    bad = await client.post("/api/ai/backtest-strategy", json={**PERIOD, "strategy": {**spec, "params": {"fast": 0}}},
                            headers=bearer(tokens))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "params.fast"
    resp = await client.post("/api/ai/backtest-strategy", json={**PERIOD, "strategy": spec}, headers=bearer(tokens))
    assert resp.status_code == 202, resp.text
    assert resp.json()["strategy_id"] is None
    await jobs_of(runtime).drain()
    job = await client.get(f"/api/jobs/{resp.json()['job_id']}", headers=bearer(tokens))
    assert job.status_code == 200 and job.json()["status"] == "succeeded"
    result = job.json()["result"]
    assert result["backtest_id"] == resp.json()["backtest_id"] and result["bars"] == 720
    assert result["final_equity"] > 0 and result["trades"] > 0
    assert (await client.get("/api/strategies", headers=bearer(tokens))).json()["items"] == []  # nothing saved
