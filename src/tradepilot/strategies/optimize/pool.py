"""Trials on several CPU cores: a process pool that holds the bars once per worker.

Backtests are numpy, but the per-trial Python (signals, fills, metrics) holds the GIL, so
threads would not add cores; processes do. Workers are started with ``spawn`` (a job runs
in a process with an event loop, threads and database connections, none of which may be
forked). The problem (bars, settings) is sent once, to each worker's initializer; a trial
sends only its parameters and bar range. One worker means no pool at all.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Self

from tradepilot.strategies.optimize.evaluate import Problem, TrialResult, evaluate

_PROBLEM: Problem | None = None
PARALLEL_MIN_WORK = 2_000_000  # bar-trials per window below which spawning processes costs more than it saves


def worker_count(cap: int, in_sample_bars: int, n_trials: int) -> int:
    """Processes for one optimisation: ``cap`` (0: one per core), but one when the work is
    small (starting a worker imports the platform: about a second each on a busy machine)."""
    if in_sample_bars * n_trials < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(cap or os.cpu_count() or 1, n_trials))


def _init(problem: Problem) -> None:
    global _PROBLEM
    _PROBLEM = problem


def _evaluate(params: dict[str, Any], start: int, stop: int) -> TrialResult:
    assert _PROBLEM is not None, "worker started without its problem"
    return evaluate(_PROBLEM, params, start, stop)


class TrialPool:
    """``run(batch)`` evaluates a batch of ``(params, start, stop)`` in order of the batch."""

    def __init__(self, problem: Problem, workers: int) -> None:
        self.problem = problem
        self.workers = max(1, workers)
        self._executor: Executor | None = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init, initargs=(problem,))

    def run(self, batch: Sequence[tuple[dict[str, Any], int, int]]) -> list[TrialResult]:
        if self._executor is None:
            return [evaluate(self.problem, p, a, b) for p, a, b in batch]
        futures: list[Future[TrialResult]] = [self._executor.submit(_evaluate, p, a, b) for p, a, b in batch]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
