"""What the live-account tests share: the fake Binance server, settings that point ccxt at it
(reconciliation on, its periodic runs left to the test clock), and an app with its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tests import support
from tests.fakes.binance_spot import FakeBinanceSpot
from tradepilot.app import create_app
from tradepilot.config import Settings
from tradepilot.core.clock import TestClock

# short look-up back-off; reconciliation on, periodic runs only when the test clock passes 10 min
LIVE_SETTINGS: dict[str, Any] = {
    "live_request_timeout_seconds": 3.0, "live_lookup_backoff_seconds": 0.05, "live_lookup_attempts": 3,
    "live_reconcile_enabled": True, "live_reconcile_interval_seconds": 600, "live_reconcile_poll_seconds": 0.05,
    "live_pending_grace_seconds": 60,
    "live_user_stream_enabled": False}  # no user-data stream unless a test serves one (test_live_user_stream)


@contextlib.asynccontextmanager
async def fake_binance(timeout_seconds: float | None = 6.0) -> AsyncIterator[FakeBinanceSpot]:
    """The fake exchange; ``timeout_seconds``: how long its held (timed-out) answers wait."""
    server = await FakeBinanceSpot().start()
    if timeout_seconds is not None:
        server.timeout_seconds = timeout_seconds
    try:
        yield server
    finally:
        await server.stop()


def live_settings(database_url: str, tmp_path: Path, fake: FakeBinanceSpot, **overrides: Any) -> Settings:
    return support.make_settings(database_url, data_dir=tmp_path / "var", live_exchange_rest_url=fake.rest_url,
                                 **{**LIVE_SETTINGS, **overrides})


@contextlib.asynccontextmanager
async def lifespan_app(settings: Settings, clock: TestClock) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application
