"""Several worker processes behind one port: with PROMETHEUS_MULTIPROC_DIR set, a scrape (and the
JSON summary's reading) sees every process's counts, not only its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER = """
from tradepilot.core.metrics import Metrics
metrics = Metrics()
metrics.orders.labels("limit", "buy").inc({n})
metrics.http_requests.labels("GET", "/health", "200").inc({n})
"""
READER = """
from datetime import UTC, datetime
from tradepilot.core.metrics import Metrics, exposed_registry
from tradepilot.ops.monitoring.readings import take_snapshot
snap = take_snapshot(exposed_registry(Metrics()), datetime.now(UTC))
print(int(snap.value("tradepilot_orders_total")), int(snap.total_requests()))
"""


def run(code: str, directory: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    done = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_counts_of_every_worker_process_are_summed(tmp_path: Path) -> None:
    run(WORKER.format(n=2), tmp_path)
    run(WORKER.format(n=3), tmp_path)
    assert run(READER, tmp_path) == "5 5"


def test_without_the_directory_a_process_reads_only_its_own(tmp_path: Path) -> None:
    run(WORKER.format(n=2), None)
    assert run(READER, None) == "0 0"
