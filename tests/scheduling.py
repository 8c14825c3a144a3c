"""How the suite is laid out for ``pytest-xdist --dist worksteal`` (the Makefile's ``make test``).

Work-stealing hands each worker one contiguous block of the collected tests and lets idle
workers take half of the longest queue, so no worker waits behind a slow test while others
have tests queued (``--dist load`` left ~170 tests queued behind a 3-minute end-to-end test).
Left in collection order, every process-level end-to-end test (``slow``) would fall in the
first worker's block and run one after another there; instead they are dealt round-robin to
the heads of the blocks, the longest first (their ``timeout`` marker is the estimate), so each
starts early, none stacks with more than one other per worker, and the tail is ordinary tests
that other workers can steal.
"""

from __future__ import annotations

import os

import pytest


def _is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def _expected_seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker is not None and marker.args else 0.0


def deal_slow_tests_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``items`` reordered: block ``i`` (sized as worksteal sizes its first split) starts with
    every ``workers``-th slow test, the longest first, then ordinary tests in their order."""
    slow = sorted((item for item in items if _is_slow(item)), key=_expected_seconds, reverse=True)
    rest = [item for item in items if not _is_slow(item)]
    heads: list[list[pytest.Item]] = [slow[i::workers] for i in range(workers)]
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for i in range(workers):
        size = remaining // (workers - i)  # what worksteal sends the i-th idle worker first
        block = heads[i][:size]
        heads[i] = heads[i][size:]
        while len(block) < size and rest:
            block.append(rest.pop(0))
        ordered.extend(block)
        remaining -= len(block)
    for head in heads:  # what did not fit (more slow tests than a block holds)
        ordered.extend(head)
    ordered.extend(rest)
    return ordered


class TellWorkersTheDist:
    """Controller-side (xdist's ``pytest_configure_node``): a worker's own ``dist`` option is
    reset to ``no``, so the controller's is passed on in ``workerinput``."""

    def pytest_configure_node(self, node: object) -> None:
        node.workerinput["tradepilot_dist"] = node.config.getoption("dist")  # type: ignore[attr-defined]


def worksteal_workers(config: pytest.Config) -> int:
    """How many workers share the run by work-stealing (0: not such a run, keep the order)."""
    if getattr(config, "workerinput", {}).get("tradepilot_dist") != "worksteal":
        return 0
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
