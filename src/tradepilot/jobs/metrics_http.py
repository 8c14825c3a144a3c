"""The worker's own small HTTP endpoint: ``/metrics`` for Prometheus and ``/health`` for probes.

``tradepilot worker`` serves no API, yet Prometheus must scrape its job counters and the
container needs a health check. A stdlib ``ThreadingHTTPServer`` in a daemon thread does
both without a web framework. The thread would keep answering even if the worker's event
loop hung, so ``/health`` is not "the thread answers": the loop stamps a heartbeat every
``BEAT_SECONDS`` and ``/health`` answers 503 once the last stamp is older than
``STALE_SECONDS``. ``/metrics`` honours ``TRADEPILOT_METRICS_TOKEN`` exactly as the API's does.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger("tradepilot.jobs.metrics_http")

BEAT_SECONDS = 1.0
STALE_SECONDS = 30.0


class WorkerEndpoint:
    """Serves ``/health`` and ``/metrics`` for one worker process until :meth:`stop`."""

    def __init__(self, *, host: str, port: int, registry: CollectorRegistry, token: str | None) -> None:
        self.registry, self.token = registry, token
        self.last_beat = time.monotonic()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the worker's log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="worker-metrics", daemon=True)
        self._beat: asyncio.Task[None] | None = None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            age = time.monotonic() - self.last_beat
            healthy = age <= STALE_SECONDS
            body = (b'{"status":"ok"}' if healthy else b'{"status":"stalled","heartbeat_age_seconds":%d}' % age)
            self._answer(request, 200 if healthy else 503, "application/json", body)
        elif path == "/metrics":
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if self.token is not None and not hmac.compare_digest(presented.encode(), self.token.encode()):
                self._answer(request, 401, "application/json", b'{"code":"metrics_token_required"}')
                return
            self._answer(request, 200, CONTENT_TYPE_LATEST, generate_latest(self.registry))
        else:
            self._answer(request, 404, "application/json", b'{"code":"not_found"}')

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    async def _heartbeat(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)  # the loop's own liveness, so real time on purpose

    def start(self) -> None:
        self._thread.start()
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat(), name="worker-heartbeat")
        logger.info("worker endpoint listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with suppress(asyncio.CancelledError):
                await self._beat
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()
