"""Subprocess entry point of the shared-study test: one process adding trials to a PostgreSQL study.

    python -m tests.integration.optimize_support trials DATABASE_URL STUDY N_TRIALS SEED GO_FILE
"""

from __future__ import annotations

import os
import sys
import time

from tests.unit.test_strategy_optimize import BARS, CONFIG
from tradepilot.strategies.catalog import get_strategy
from tradepilot.strategies.optimize.evaluate import Problem
from tradepilot.strategies.optimize.pool import TrialPool
from tradepilot.strategies.optimize.space import parse_space
from tradepilot.strategies.optimize.study import (
    close_storage,
    make_sampler,
    open_storage,
    open_study,
    run_trials,
)

SPACE = {"fast": {"low": 2, "high": 40}, "slow": {"low": 41, "high": 200}}


def trials(database_url: str, study: str, n_trials: int, seed: int, go_file: str) -> None:
    space = parse_space(get_strategy("sma_cross"), SPACE)
    storage = open_storage(database_url)
    try:
        shared = open_study(storage, study, make_sampler("tpe", space, seed))
        print("ready", flush=True)
        while not os.path.exists(go_file):
            time.sleep(0.005)
        problem = Problem("sma_cross", {}, [BARS], CONFIG, "sharpe", 0, "1h")
        with TrialPool(problem, 1) as pool:
            ran = run_trials(shared, space, pool, (0, len(BARS)), n_trials, worker=f"pid-{os.getpid()}", shared=True)
        print(f"ran {ran}", flush=True)
    finally:
        close_storage(storage)


if __name__ == "__main__":
    if sys.argv[1] == "trials":
        trials(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
