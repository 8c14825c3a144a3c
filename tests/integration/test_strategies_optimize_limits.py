"""Plan limits of optimisations: trials (``optimization_trials``) and the concurrency slots they
share with backtests (``concurrent_backtests``). Jobs do not execute here (``jobs_inprocess=False``),
so what is enqueued stays queued and the counts are deterministic."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.strategies_support import PERIOD, create_strategy
from tests.integration.test_strategies_optimize_api import OPTIMIZE
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.identity.plans import PLANS


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", jobs_inprocess=False)


def test_every_plan_caps_optimisation_trials() -> None:
    assert [PLANS[p].optimization_trials for p in ("free", "pro", "enterprise")] == [200, 2_000, 20_000]


async def test_optimisations_share_the_backtest_slots_and_own_limits_tighten(client: httpx.AsyncClient) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    strategy = await create_strategy(client, tokens)
    own = await client.put("/api/users/me/settings", json={"limits": {"concurrent_backtests": 1,
                                                                      "optimization_trials": 30}}, headers=auth)
    assert own.status_code == 200, own.text
    optimize = f"/api/strategies/{strategy['id']}/optimize"
    over = await client.post(optimize, json={**OPTIMIZE, "sampler": "random", "n_trials": 16}, headers=auth)
    assert over.status_code == 422 and over.json()["code"] == "optimization_too_large"
    assert over.json()["limit"] == 30 and over.json()["trials"] == 32  # 16 per window, 2 windows
    backtest = await client.post(f"/api/strategies/{strategy['id']}/backtest", json=PERIOD, headers=auth)
    assert backtest.status_code == 202
    busy = await client.post(optimize, json={**OPTIMIZE, "sampler": "random", "n_trials": 15}, headers=auth)
    assert busy.status_code == 429 and busy.json()["code"] == "backtest_concurrency_limit"
    assert busy.headers["Retry-After"]
    assert (await client.delete(f"/api/jobs/{backtest.json()['job_id']}", headers=auth)).status_code in (200, 202)
    accepted = await client.post(optimize, json={**OPTIMIZE, "sampler": "random", "n_trials": 15}, headers=auth)
    assert accepted.status_code == 202, accepted.text
    limits = (await client.get("/api/users/me/limits", headers=auth)).json()
    assert limits["usage"]["concurrent_backtests"] == 1 and limits["limits"]["optimization_trials"] == 30
    again = await client.post(f"/api/strategies/{strategy['id']}/backtest", json=PERIOD, headers=auth)
    assert again.status_code == 429  # the optimisation holds the slot
    # a queued optimisation is cancelled at once and frees its slot
    url = f"/api/strategies/{strategy['id']}/optimizations/{accepted.json()['optimization_id']}"
    cancelled = await client.post(f"{url}/cancel", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.get(url, headers=auth)).json()["error"] == "cancelled"
    assert (await client.post(f"/api/strategies/{strategy['id']}/backtest", json=PERIOD,
                              headers=auth)).status_code == 202
