"""Retry arithmetic and error text of the job system (no database)."""

from __future__ import annotations

import random

from tradepilot.jobs.config import JobsConfig
from tradepilot.jobs.service import MAX_ERROR_CHARS, backoff_seconds, safe_error


def test_backoff_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 5), (2, 10), (3, 20), (4, 40), (10, 300), (40, 300)]:
        draws = [backoff_seconds(attempt, base=5, cap=300, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 4  # really jittered


def test_safe_error_is_one_redacted_bounded_line() -> None:
    exc = RuntimeError("connect failed\nTraceback (most recent call last)\n  Bearer eyJhbGciOi.x.y tp_abcdefghijk")
    text = safe_error(exc)
    assert text.startswith("RuntimeError: connect failed") and "\n" not in text
    assert "eyJhbGciOi" not in text and "tp_abcdefghijk" not in text
    assert safe_error(ValueError()) == "ValueError"
    assert len(safe_error(ValueError("x" * 5000))) == MAX_ERROR_CHARS


def test_config_reads_jobs_settings_when_present() -> None:
    class FakeSettings:
        jobs_poll_seconds = 0.25
        jobs_concurrency = 3

    config = JobsConfig.from_settings(FakeSettings(), redispatch_seconds=9)  # type: ignore[arg-type]
    assert (config.poll_seconds, config.concurrency, config.redispatch_seconds) == (0.25, 3, 9)
    assert config.heartbeat_interval_seconds == config.heartbeat_timeout_seconds / 4
