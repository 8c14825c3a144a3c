"""Candles from CSV files (``timestamp,open,high,low,close,volume``, ISO-8601 UTC times) —
how the evaluation reads ``../shared/data`` and operators feed their own history."""

from __future__ import annotations

import csv
import itertools
from datetime import datetime
from pathlib import Path

import numpy as np

from tradepilot.ai.features import Candles


def read_candles_csv(path: Path) -> Candles:
    times, columns = [], [[] for _ in range(5)]  # type: list[float], list[list[float]]
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            times.append(datetime.fromisoformat(row["timestamp"]).timestamp())
            for column, name in zip(columns, ("open", "high", "low", "close", "volume")):
                column.append(float(row[name]))
    if not times:
        raise ValueError(f"{path}: no candles")
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"{path}: timestamps are not strictly increasing")
    return Candles(np.array(times), *(np.array(c) for c in columns))
