"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.integration.orders_support import ASKS, BIDS, Market
from tradepilot.runtime import Runtime


@pytest.fixture
async def market(runtime: Runtime) -> Market:
    """The market service fed the standard three-level book (a module may define its own)."""
    m = Market(runtime)
    await m.book(BIDS, ASKS)
    return m
