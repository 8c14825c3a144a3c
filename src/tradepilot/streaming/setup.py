"""Wiring of streaming into the process lifecycle (called from the app's lifespan)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime
    from tradepilot.streaming.hub import StreamHub
    from tradepilot.streaming.manager import StreamingManager

HUB_KEY = "streaming_hub"
SERVICE_KEY = "streaming"  # the StreamingManager, for other domains


async def start_streaming(runtime: Runtime) -> StreamingManager:
    """Start this process's hub (after identity: it re-authenticates through it)."""
    from tradepilot.streaming.hub import StreamHub
    from tradepilot.streaming.manager import StreamingManager

    hub: StreamHub | None = runtime.services.get(HUB_KEY)
    if hub is None:
        hub = StreamHub(runtime)
        runtime.services[HUB_KEY] = hub
        runtime.services[SERVICE_KEY] = StreamingManager(runtime, hub)
        await hub.start()
    return runtime.services[SERVICE_KEY]  # type: ignore[no-any-return]


async def stop_streaming(runtime: Runtime) -> None:
    """Close every client with ``server_shutdown`` (code 1001) and leave the bus."""
    hub: StreamHub | None = runtime.services.pop(HUB_KEY, None)
    runtime.services.pop(SERVICE_KEY, None)
    if hub is not None:
        await hub.stop()
