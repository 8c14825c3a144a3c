"""With PostgreSQL, an optimisation's study lives in the database (schema ``optuna``) and
several processes — ``tradepilot worker``s on several machines, here two OS processes and two
jobs — add trials to the same study within one budget."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import bearer, new_user
from tests.integration.jobs_support import spawn, wait_until
from tests.integration.optimize_support import SPACE
from tests.integration.strategies_support import create_strategy, import_btc_1h
from tests.integration.test_strategies_optimize_api import OPTIMIZE
from tests.support import make_settings
from tradepilot.config import Settings
from tradepilot.runtime import Runtime
from tradepilot.strategies.catalog import get_strategy
from tradepilot.strategies.optimize.space import parse_space
from tradepilot.strategies.optimize.study import (
    close_storage,
    make_sampler,
    open_storage,
    open_study,
)

N_TRIALS = 24


@pytest.fixture
def db_backend() -> str:
    return "postgres"  # a shared study needs a shared database


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(database_url, data_dir=tmp_path / "var", optimize_shards=2)


def test_two_processes_add_trials_to_one_postgres_study(database_url: str, tmp_path: Path) -> None:
    name = f"test-shared-{uuid.uuid4()}"
    storage = open_storage(database_url)
    try:
        open_study(storage, name, make_sampler("tpe", parse_space(get_strategy("sma_cross"), SPACE), 0))
        go = tmp_path / "go"
        procs = [spawn(["-m", "tests.integration.optimize_support", "trials", database_url, name, str(N_TRIALS),
                        str(seed), str(go)], {}, tmp_path / f"worker{seed}.log") for seed in (1, 2)]
        deadline = time.monotonic() + 120
        while not all("ready" in (tmp_path / f"worker{s}.log").read_text() for s in (1, 2)):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [(tmp_path / f"worker{s}.log").read_text() for s in (1, 2)]
            time.sleep(0.05)
        go.touch()
        for p in procs:
            assert p.wait(timeout=300) == 0, [(tmp_path / f"worker{s}.log").read_text() for s in (1, 2)]
        study = open_study(storage, name, make_sampler("random", parse_space(get_strategy("sma_cross"), SPACE), 0))
        trials = study.get_trials(deepcopy=False)
        workers = {t.user_attrs["result"]["worker"] for t in trials}
        ran = [int((tmp_path / f"worker{s}.log").read_text().split("ran ")[1]) for s in (1, 2)]
        assert len(workers) == 2 and all(r > 0 for r in ran), ran  # both processes contributed
        assert sum(ran) == len(trials) and N_TRIALS <= len(trials) <= N_TRIALS + 1  # one budget
        assert all(t.state.is_finished() for t in trials)
        assert len({t.number for t in trials}) == len(trials)
    finally:
        close_storage(storage)


async def test_an_optimisation_shares_each_windows_study_with_a_helper_job(client: httpx.AsyncClient,
                                                                          runtime: Runtime) -> None:
    _, tokens = await new_user(client)
    auth = bearer(tokens)
    await import_btc_1h(runtime)
    strategy = await create_strategy(client, tokens)
    body = {**OPTIMIZE, "sampler": "tpe", "n_trials": 40, "walk_forward": 1, "seed": 3,
            "space": {"fast": {"low": 2, "high": 40}, "slow": {"low": 41, "high": 200}}}
    accepted = (await client.post(f"/api/strategies/{strategy['id']}/optimize", json=body, headers=auth)).json()
    url = f"/api/strategies/{strategy['id']}/optimizations/{accepted['optimization_id']}"

    async def finished() -> dict | None:
        view = (await client.get(url, params={"trials": "true"}, headers=auth)).json()
        return view if view["status"] in ("succeeded", "failed") else None

    done = await wait_until(finished, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    trials = done["trials"][0]
    jobs = {t["worker"].rsplit(":", 1)[1] for t in trials}
    assert accepted["job_id"] in jobs and len(jobs) == 2  # the optimisation's job and its helper
    assert 40 <= len(trials) <= 41 and done["report"]["windows"][0]["trials"]["total"] == len(trials)
    best = max((t for t in trials if t["outcome"] == "complete"), key=lambda t: (t["value"], -t["number"]))
    assert done["report"]["windows"][0]["best_trial"] == best["number"]
    # the study is in PostgreSQL, in Optuna's own schema
    storage = open_storage(runtime.settings.database_url)
    try:
        study = open_study(storage, f"tradepilot-opt-{accepted['optimization_id']}-w0",
                           make_sampler("random", parse_space(get_strategy("sma_cross"), body["space"]), 0))
        assert len(study.get_trials(deepcopy=False)) == len(trials)
    finally:
        close_storage(storage)
