"""Every benchmark still runs: each script with ``--smoke`` (small numbers, seconds).

The figures of a smoke run are too short to compare and a missed target does not fail it;
what fails is a benchmark that no longer starts, crashes, or prints no verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each starts servers and load generators

BENCHMARKS = sorted(p for p in (Path(__file__).resolve().parents[2] / "benchmarks").glob("*.py")
                    if not p.name.startswith("_"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_with_smoke(script: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(script), "--smoke"], cwd=script.parents[1], env=env,
                          capture_output=True, text=True, timeout=280)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "target" in output.lower(), output[-4000:]
