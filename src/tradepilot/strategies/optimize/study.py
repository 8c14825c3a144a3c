"""Where a study lives, which sampler draws its trials, and the ask-and-tell loop.

* Storage: with PostgreSQL configured, Optuna's ``RDBStorage`` on the platform's database
  through a synchronous psycopg URL, in a schema of its own (``optuna``; its tables and its
  own Alembic version table never mix with ours), so several ``tradepilot worker`` processes
  on several machines add trials to one study. With SQLite, an in-memory study: one process
  runs it, and its trials are kept in the optimisation's row anyway.
* Samplers: Optuna's grid, random and TPE, seeded.
* The loop asks a batch of trials (one per worker process), evaluates them, and tells them in
  the order asked — so a seeded run is reproducible for the same worker count, whatever order
  the processes finish in. It stops asking once the study holds ``n_trials`` trials, counting
  every process's, so processes sharing a study share the budget.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, make_url, text

from tradepilot.strategies.optimize.evaluate import TrialResult
from tradepilot.strategies.optimize.pool import TrialPool
from tradepilot.strategies.optimize.space import SearchSpace

Sampler = Literal["grid", "random", "tpe"]
SAMPLERS: tuple[Sampler, ...] = ("grid", "random", "tpe")
OPTUNA_SCHEMA = "optuna"
STOPPED_ATTR = "stopped"  # set on the study when its optimisation ends or is cancelled

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
log = logging.getLogger(__name__)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, minus its ``study.stop()`` after the last point: that call only
    works inside ``study.optimize`` and would fail ``study.tell``; our loop stops by count."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        return None


def make_sampler(kind: Sampler, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "grid":
        return _AskTellGridSampler(space.grid(), seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def sync_postgres_url(database_url: str) -> str | None:
    """The psycopg (synchronous) form of a PostgreSQL URL; None for anything else."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def open_storage(database_url: str | None) -> BaseStorage:
    """The storage for studies under this database (see the module's docstring)."""
    sync_url = sync_postgres_url(database_url) if database_url else None
    if sync_url is None:
        return InMemoryStorage()
    engine = create_engine(sync_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
    finally:
        engine.dispose()
    return RDBStorage(sync_url, engine_kwargs={
        "pool_pre_ping": True, "connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}})


def close_storage(storage: BaseStorage) -> None:
    if isinstance(storage, RDBStorage):
        storage.engine.dispose()


def is_shared(storage: BaseStorage) -> bool:
    return isinstance(storage, RDBStorage)


def open_study(storage: BaseStorage, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                               load_if_exists=True)


RESULT_ATTR = "result"  # one user attribute per trial: every attribute costs a round trip to the storage


def _tell(study: optuna.Study, trial: optuna.Trial, result: TrialResult, worker: str) -> None:
    trial.set_user_attr(RESULT_ATTR, {"outcome": result.outcome, "trades": result.trades, "worker": worker,
                                      "reason": result.reason, "metrics": result.metrics})
    if result.outcome == "complete":
        study.tell(trial, result.value)
    else:
        study.tell(trial, state=TrialState.PRUNED)  # infeasible or invalid: kept, never "best"


def run_trials(study: optuna.Study, space: SearchSpace, pool: TrialPool, bars: tuple[int, int], n_trials: int, *,
               worker: str, after_batch: Callable[[int], None] | None = None, shared: bool = False) -> int:
    """Ask, evaluate on ``bars`` and tell until the study holds ``n_trials`` trials; returns
    how many this call ran. ``after_batch(trials in study)`` may raise to stop (cancellation);
    with ``shared`` the loop also ends when the study is marked stopped by its coordinator."""
    ran = 0
    while True:
        if shared and study.user_attrs.get(STOPPED_ATTR):
            break
        room = n_trials - len(study.get_trials(deepcopy=False))
        if room <= 0:
            break
        asked = [study.ask() for _ in range(min(pool.workers, room))]
        told = 0
        try:
            params = [space.suggest(t) for t in asked]
            results = pool.run([(p, *bars) for p in params])
            for trial, result in zip(asked, results, strict=True):
                _tell(study, trial, result, worker)
                told += 1
        finally:
            for trial in asked[told:]:
                study.tell(trial, state=TrialState.FAIL)  # never left running
        ran += told
        if after_batch is not None:
            after_batch(len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))))
    return ran


def wait_for_running(study: optuna.Study, timeout: float) -> None:
    """Let other processes' trials in flight finish (bounded: a dead worker's stay running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(0.2)
    log.warning("study %s: trials still running after %.0f s; judging without them", study.study_name, timeout)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every finished trial as the API reports it."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        attrs = t.user_attrs.get(RESULT_ATTR, {})
        rows.append({"number": t.number, "params": t.params, "value": t.value,
                     "outcome": attrs.get("outcome", "failed" if t.state == TrialState.FAIL else None),
                     "trades": attrs.get("trades"), "reason": attrs.get("reason"), "metrics": attrs.get("metrics"),
                     "worker": attrs.get("worker")})
    return rows


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The highest-scoring feasible trial (ties: the earliest), or None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return max(complete, key=lambda t: (t.value, -t.number))
