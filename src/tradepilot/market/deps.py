"""FastAPI dependencies of /api/market: the service, a known instrument, a time range."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends, Query

from tradepilot.core.deps import RuntimeDep
from tradepilot.core.errors import ServiceUnavailable, Unprocessable
from tradepilot.market.service import MarketService
from tradepilot.market.types import Instrument


def get_market(runtime: RuntimeDep) -> MarketService:
    service = runtime.services.get("market")
    if service is None:
        raise ServiceUnavailable("Market data is not running in this process.", code="market_unavailable")
    return service  # type: ignore[no-any-return]


Market = Annotated[MarketService, Depends(get_market)]


def known_instrument(symbol: str, market: Market) -> Instrument:
    """The path's symbol (``BTC%2FUSDT`` or ``BTC-USDT``) as a listed instrument, else 404."""
    return market.instrument(symbol)


KnownInstrument = Annotated[Instrument, Depends(known_instrument)]


def query_instrument(market: Market, symbol: Annotated[str, Query(description="BTC/USDT or BTC-USDT")]) -> Instrument:
    return market.instrument(symbol)


QueryInstrument = Annotated[Instrument, Depends(query_instrument)]


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class TimeRange:
    """``start`` (inclusive) and ``end`` (exclusive), RFC 3339 (naive means UTC); 422 when empty."""

    def __init__(self, start: Annotated[datetime | None, Query(description="inclusive, RFC 3339")] = None,
                 end: Annotated[datetime | None, Query(description="exclusive, RFC 3339")] = None) -> None:
        self.start, self.end = as_utc(start), as_utc(end)
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise Unprocessable("start must be before end.", code="invalid_range")


Range = Annotated[TimeRange, Depends(TimeRange)]
