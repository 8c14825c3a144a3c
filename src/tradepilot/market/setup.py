"""Wiring of the market into a process: ``start_market`` / ``stop_market`` (app lifespan).

Every process gets a :class:`MarketService` (``runtime.services["market"]``) fed by the bus;
every process also competes for the venue's feed lease, and the one holding it runs the feed
(:class:`FeedOwner`). In the embedded mode that is simply this process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tradepilot.core.lease import lease_manager
from tradepilot.market.owner import FeedOwner, lease_name
from tradepilot.market.service import MarketService
from tradepilot.market.store import CandleStore
from tradepilot.market.types import MarketFeed

if TYPE_CHECKING:
    from tradepilot.config import Settings
    from tradepilot.core.clock import Clock
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.market")

SERVICE_KEY = "market"
_OWNER_KEY = "market_owner"
STOP_TIMEOUT = 15.0  # a healthy owner stops in well under a second (one partition write at most)
LAST_RESORT_TIMEOUT = 5.0


def configured_venue(settings: Settings) -> str:
    """The venue name of the configured feed, without starting it (CLI imports use it)."""
    if settings.market_feed == "simulated":
        from tradepilot.market.feeds.simulated import VENUE

        return VENUE
    from tradepilot.core.clock import LiveClock

    return build_market_feed(settings, LiveClock()).venue


def build_market_feed(settings: Settings, clock: Clock) -> MarketFeed:
    """The feed ``TRADEPILOT_MARKET_FEED`` names (simulated, replay or exchange)."""
    if settings.market_feed == "simulated":
        from tradepilot.market.feeds.simulated import SimulatedFeed

        return SimulatedFeed(settings.market_symbols, seed=settings.market_seed, clock=clock,
                             tick_interval=settings.market_tick_interval_seconds,
                             backfill_days=settings.market_backfill_days)
    from tradepilot.market.feeds import build_feed

    return build_feed(settings.market_feed, settings, clock=clock)


async def start_market(runtime: Runtime, *, feed: MarketFeed | None = None) -> MarketService:
    """Start the service (caches from the bus) and the competition for the feed's lease."""
    feed = feed or build_market_feed(runtime.settings, runtime.clock)
    store = CandleStore.for_settings(runtime.settings, feed.venue)
    service = MarketService(runtime, venue=feed.venue, store=store)
    runtime.services[SERVICE_KEY] = service
    await service.start()
    if runtime.settings.market_feed != "exchange" and not service.instruments():
        # a local feed knows its instruments without asking anyone: usable before the owner writes them
        service.set_instruments(await feed.instruments())
    if not runtime.settings.market_feed_owner:
        return service  # a consumer only: another process runs the feed
    start_feed_owner(runtime, feed, service, store)
    return service


def start_feed_owner(runtime: Runtime, feed: MarketFeed, service: MarketService, store: CandleStore) -> FeedOwner:
    """Compete for the feed's lease and run a :class:`FeedOwner` while holding it (until
    :func:`stop_market`). Separate from :func:`start_market` so tests can give it their store."""
    owner = FeedOwner(runtime, feed, service, store)
    task = asyncio.create_task(lease_manager(runtime).run_while_held(lease_name(feed.venue), owner.run),
                               name=f"market-feed-{feed.venue}")
    runtime.services[_OWNER_KEY] = (owner, task)
    return owner


async def stop_market(runtime: Runtime) -> None:
    """Stop the feed (flushing its candles, releasing the lease), then the service.

    The owner is asked to stop *and* cancelled: the request is what ends it when a library
    swallows the cancellation (``owner.py``). It then finishes the partition it is writing,
    flushes its own closed candles (a few seconds' worth; that wind-down is not interruptible)
    and releases the lease, normally in well under a second. ``STOP_TIMEOUT`` only guards
    against a bug: past it the task is cancelled again (in case the first cancellation was
    lost somewhere else) and, as a last resort, left behind with an error naming where it is.
    """
    entry = runtime.services.pop(_OWNER_KEY, None)
    if entry is not None:
        owner, task = entry
        owner.request_stop()
        task.cancel()
        _, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if pending:
            logger.error("the market feed did not stop in time; cancelling it again",
                         extra={"stack": _stack(task)})
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=LAST_RESORT_TIMEOUT)
            if pending:
                logger.error("the market feed still runs; leaving it behind", extra={"stack": _stack(task)})
    service: MarketService | None = runtime.services.pop(SERVICE_KEY, None)
    if service is not None:
        await service.stop()


def _stack(task: asyncio.Task[None]) -> str:
    """Where a task that will not stop is (the whole await chain, which ``Task.get_stack`` omits)."""
    lines, awaitable = [], task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return " <- ".join(reversed(lines))


def feed_owner(runtime: Runtime) -> FeedOwner | None:
    """This process's feed owner object (it runs the feed only while holding the lease)."""
    entry = runtime.services.get(_OWNER_KEY)
    return entry[0] if entry else None
