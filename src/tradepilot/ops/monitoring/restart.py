"""Graceful restart: the server stops accepting, finishes what is in flight, persists its state
and exits with ``RESTART_EXIT_CODE``, which the process manager restarts (docs/operations.md).

``tradepilot serve`` runs uvicorn through :func:`serve` so that the API can reach the server:
``POST /api/system/restart`` sets uvicorn's ``should_exit`` (the same graceful path as SIGTERM:
listeners closed, in-flight requests answered, then the lifespan's shutdown stops every
component and releases its leases), and ``serve`` returns the exit code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tradepilot.config import Settings
    from tradepilot.runtime import Runtime

logger = logging.getLogger("tradepilot.ops.restart")

RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" — systemd Restart=on-failure, Docker restart: on-failure
SERVICE_KEY = "restart"
GRACEFUL_SHUTDOWN_SECONDS = 30  # in-flight requests get this long; then they are cancelled and the process stops


@dataclass
class RestartControl:
    """The running server (None when the app is not served by ``tradepilot serve``)."""

    server: Any = None
    requested_by: str | None = field(default=None)

    @property
    def available(self) -> bool:
        return self.server is not None

    @property
    def requested(self) -> bool:
        return self.requested_by is not None

    def request(self, by: str) -> None:
        self.requested_by = by
        logger.warning("graceful restart requested", extra={"requested_by": by})
        self.server.should_exit = True


def restart_control(runtime: Runtime) -> RestartControl:
    control = runtime.services.get(SERVICE_KEY)
    if control is None:
        control = runtime.services[SERVICE_KEY] = RestartControl()
    return control  # type: ignore[no-any-return]


def serve(app: FastAPI, settings: Settings) -> int:
    """Run the API until it stops; ``RESTART_EXIT_CODE`` when a restart was asked for, else 0."""
    import uvicorn

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, proxy_headers=False,
                            ws_ping_interval=20, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    server = uvicorn.Server(config)
    control = restart_control(app.state.runtime)
    control.server = server
    server.run()
    if control.requested:
        logger.warning("exiting for a restart", extra={"exit_code": RESTART_EXIT_CODE})
        return RESTART_EXIT_CODE
    return 0
