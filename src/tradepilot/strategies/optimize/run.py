"""A whole optimisation: for each window, trials on its in-sample bars, then the best
parameters judged on its out-of-sample bars; the report puts both side by side.

Synchronous (it runs in a job's thread or the CLI). The aggregate row answers "does it hold
up out of sample?": the mean objective in and out of sample, their ratio (walk-forward
efficiency) and the out-of-sample returns compounded over the windows. ``best_params`` are
the last window's: the ones fitted on the most recent data, what one would trade next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from tradepilot.strategies.backtest.result import utc
from tradepilot.strategies.optimize.evaluate import Objective, Problem
from tradepilot.strategies.optimize.pool import TrialPool
from tradepilot.strategies.optimize.space import SearchSpace
from tradepilot.strategies.optimize.study import (
    RESULT_ATTR,
    STOPPED_ATTR,
    Sampler,
    best_trial,
    is_shared,
    make_sampler,
    open_study,
    run_trials,
    trial_rows,
    wait_for_running,
)
from tradepilot.strategies.optimize.windows import Window, make_windows

RUNNING_TRIALS_TIMEOUT = 120.0  # seconds to wait for other processes' trials at a window's end


@dataclass(frozen=True)
class OptimizeSpec:
    sampler: Sampler
    n_trials: int  # per window
    seed: int
    objective: Objective
    min_trades: int
    windows: int
    in_sample: float
    space: SearchSpace


def study_name(prefix: str, window: int) -> str:
    return f"{prefix}-w{window}"


def _span(problem: Problem, start: int, stop: int) -> dict[str, Any]:
    time = problem.series[0].time
    return {"start": utc(int(time[start])), "end": utc(int(time[stop - 1])), "bars": stop - start}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(rows: list[dict[str, Any]], objective: Objective) -> dict[str, Any]:
    judged = [r for r in rows if r["out_of_sample_metrics"] is not None]
    ins = [r["in_sample_metrics"][objective] for r in judged if r["in_sample_metrics"][objective] is not None]
    outs = [r["out_of_sample_metrics"][objective] for r in judged
            if r["out_of_sample_metrics"][objective] is not None]
    compounded = 1.0
    for r in judged:
        compounded *= 1 + (r["out_of_sample_metrics"]["total_return"] or 0.0)
    mean_in, mean_out = _mean(ins), _mean(outs)
    efficiency = mean_out / mean_in if mean_in and mean_out is not None and math.isfinite(mean_out / mean_in) \
        else None
    return {"windows": len(rows), "windows_with_result": len(judged), "in_sample_objective_mean": mean_in,
            "out_of_sample_objective_mean": mean_out, "efficiency": efficiency,
            "out_of_sample_total_return": compounded - 1 if judged else None,
            "out_of_sample_trades": sum(r["out_of_sample_metrics"]["trades"] for r in judged)}


class Optimizer:
    """Runs ``spec`` on ``problem`` with studies named ``<prefix>-w<k>`` in ``storage``.

    ``progress(fraction, message)`` is called after every batch and may raise to cancel;
    ``window_started(k)`` lets a job enqueue helpers for window ``k`` of a shared study.
    """

    def __init__(self, problem: Problem, spec: OptimizeSpec, storage: optuna.storages.BaseStorage, prefix: str, *,
                 workers: int, worker_label: str, progress: Callable[[float, str], None] | None = None,
                 window_started: Callable[[int], None] | None = None) -> None:
        self.problem, self.spec, self.storage, self.prefix = problem, spec, storage, prefix
        self.workers, self.worker_label = workers, worker_label
        self.progress = progress or (lambda f, m: None)
        self.window_started = window_started or (lambda k: None)

    def windows(self) -> list[Window]:
        return make_windows(len(self.problem.series[0]), self.spec.windows, self.spec.in_sample)

    def run(self) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
        """The report and every window's trials."""
        windows = self.windows()
        rows: list[dict[str, Any]] = []
        trials: list[list[dict[str, Any]]] = []
        with TrialPool(self.problem, min(self.workers, self.spec.n_trials)) as pool:
            for window in windows:
                study = open_study(self.storage, study_name(self.prefix, window.index),
                                   make_sampler(self.spec.sampler, self.spec.space, self.spec.seed + window.index))
                self.window_started(window.index)
                try:
                    row, window_trials = self._window(study, window, pool, len(windows))
                finally:
                    if is_shared(self.storage):
                        study.set_user_attr(STOPPED_ATTR, True)  # helpers of this window stop asking
                rows.append(row)
                trials.append(window_trials)
        report = {"objective": self.spec.objective, "sampler": self.spec.sampler, "seed": self.spec.seed,
                  "min_trades": self.spec.min_trades, "n_trials": self.spec.n_trials,
                  "walk_forward": self.spec.windows, "in_sample": self.spec.in_sample,
                  "space": self.spec.space.as_dict(), "windows": rows,
                  "aggregate": aggregate(rows, self.spec.objective),
                  "best_params": rows[-1]["best_params"] if rows else None}
        return report, trials

    def _window(self, study: optuna.Study, window: Window, pool: TrialPool,
                count: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        n = self.spec.n_trials

        def after_batch(done: int) -> None:
            self.progress((window.index + min(done, n) / n) / count,
                          f"window {window.index + 1}/{count}: {min(done, n)}/{n} trials")

        run_trials(study, self.spec.space, pool, window.in_sample, n, worker=self.worker_label,
                   after_batch=after_batch)
        if is_shared(self.storage):
            wait_for_running(study, RUNNING_TRIALS_TIMEOUT)
        rows = trial_rows(study)
        best = best_trial(study)
        outcomes = [r["outcome"] for r in rows]
        row: dict[str, Any] = {
            "index": window.index, "in_sample": _span(self.problem, *window.in_sample),
            "out_of_sample": _span(self.problem, *window.out_of_sample),
            "trials": {"total": len(rows), "complete": outcomes.count("complete"),
                       "infeasible": outcomes.count("infeasible"), "invalid": outcomes.count("invalid")},
            "best_trial": None, "best_params": None, "in_sample_metrics": None, "out_of_sample_metrics": None}
        if best is not None:
            params = {**self.problem.base_params, **best.params}
            oos = pool.run([(best.params, *window.out_of_sample)])[0]
            row.update(best_trial=best.number, best_params=params,
                       in_sample_metrics={**best.user_attrs[RESULT_ATTR]["metrics"],
                                          "trades": best.user_attrs[RESULT_ATTR]["trades"], "objective": best.value},
                       out_of_sample_metrics={**oos.metrics, "trades": oos.trades,
                                              "objective": oos.metrics.get(self.spec.objective)})
        return row, rows
