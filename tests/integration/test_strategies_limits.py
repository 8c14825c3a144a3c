"""Per-plan backtest limits: size (``backtest_bars``) and concurrency (``concurrent_backtests``).

Jobs do not execute in this module's app (``jobs_inprocess=False``), so enqueued backtests stay
queued and the concurrency count is deterministic.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import bearer, new_user
from tests.integration.jobs_support import jobs_of
from tests.integration.strategies_support import PERIOD, SMA, create_strategy
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.identity.plans import PLANS
from tradepilot.jobs.models import Job
from tradepilot.runtime import Runtime
from tradepilot.strategies.engine import BACKTEST_JOB


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", jobs_inprocess=False)


def test_every_plan_caps_backtests() -> None:
    assert [PLANS[p].concurrent_backtests for p in ("free", "pro", "enterprise")] == [2, 5, 20]
    assert PLANS["free"].backtest_bars < PLANS["pro"].backtest_bars < PLANS["enterprise"].backtest_bars


async def test_too_many_bars_is_422_and_concurrency_is_429(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens, {**SMA, "timeframe": "1m", "symbols": ["BTC/USDT", "ETH/USDT"]})
    url = f"/api/strategies/{strategy['id']}/backtest"
    # free plan: 500,000 bars; a year of minutes on two symbols is 1,051,200
    big = await client.post(url, json={"start": "2023-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, headers=auth)
    assert big.status_code == 422 and big.json()["code"] == "backtest_too_large"
    assert big.json()["limit"] == 500_000 and big.json()["estimated_bars"] == 1_051_200
    # the user's own tighter limit applies (effective = min(own, plan))
    own = await client.put("/api/users/me/settings", json={"limits": {"backtest_bars": 1000,
                                                                      "concurrent_backtests": 1}}, headers=auth)
    assert own.status_code == 200, own.text
    day = {"start": "2023-01-01T00:00:00Z", "end": "2023-01-02T00:00:00Z"}  # 1,440 × 2 bars
    assert (await client.post(url, json=day, headers=auth)).json()["code"] == "backtest_too_large"
    small = {"start": "2023-01-01T00:00:00Z", "end": "2023-01-01T08:00:00Z"}  # 960 bars
    first = await client.post(url, json=small, headers=auth)
    assert first.status_code == 202, first.text
    second = await client.post(url, json=small, headers=auth)
    assert second.status_code == 429 and second.json()["code"] == "backtest_concurrency_limit"
    assert second.headers["Retry-After"] and second.json()["limit"] == 1
    limits = (await client.get("/api/users/me/limits", headers=auth)).json()
    assert limits["usage"]["concurrent_backtests"] == 1 and limits["limits"]["concurrent_backtests"] == 1
    # cancelling the queued job frees the slot at once
    cancel = await client.delete(f"/api/jobs/{first.json()['job_id']}", headers=auth)
    assert cancel.status_code == 200
    run = (await client.get(f"/api/strategies/{strategy['id']}/backtests/{first.json()['backtest_id']}",
                            headers=auth)).json()
    assert run["status"] == "cancelled" and run["progress"] == 0.0
    assert (await client.post(url, json=small, headers=auth)).status_code == 202
    # another user is not limited by this one's backtests
    _, other = await new_user(client)
    theirs = await create_strategy(client, other)
    assert (await client.post(f"/api/strategies/{theirs['id']}/backtest", json=PERIOD,
                              headers=bearer(other))).status_code == 202


async def test_the_backtest_and_its_job_are_one_transaction(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A refused backtest leaves no job behind; an accepted one has its job queued for its user."""
    profile, tokens = await new_user(client)
    strategy = await create_strategy(client, tokens)
    url = f"/api/strategies/{strategy['id']}/backtest"
    assert (await client.post(url, json={"start": PERIOD["end"], "end": PERIOD["start"]},
                              headers=bearer(tokens))).status_code == 422
    accepted = await client.post(url, json=PERIOD, headers={**bearer(tokens), "Idempotency-Key": "bt-1"})
    replay = await client.post(url, json=PERIOD, headers={**bearer(tokens), "Idempotency-Key": "bt-1"})
    assert accepted.status_code == replay.status_code == 202 and accepted.json() == replay.json()
    async with runtime.db.session() as session:
        job = await jobs_of(runtime).get(session, uuid.UUID(accepted.json()["job_id"]))
        count = await session.scalar(select(func.count()).select_from(Job).where(Job.kind == BACKTEST_JOB))
    assert job is not None and job.status == "queued" and str(job.user_id) == profile["id"]
    assert count == 1  # the refused request and the replay enqueued nothing
