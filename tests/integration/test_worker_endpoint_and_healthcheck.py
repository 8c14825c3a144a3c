"""The worker's ``/metrics`` + ``/health`` endpoint and ``tradepilot healthcheck``, the container
probe, against a real listening socket (the endpoint itself; no app needed)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.e2e.servers import free_port
from tradepilot.jobs import metrics_http
from tradepilot.jobs.metrics_http import WorkerEndpoint
from tradepilot.ops.healthcheck import probe_url, run


@pytest.fixture
async def endpoint():  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    Counter("tradepilot_probe_total", "A counter to find in the exposition.", registry=registry).inc(3)
    worker = WorkerEndpoint(host="127.0.0.1", port=free_port(), registry=registry, token="s3cret-token")
    worker.start()
    yield worker
    await worker.stop()


async def test_metrics_need_the_token_and_health_follows_the_event_loop(endpoint: WorkerEndpoint) -> None:
    base = f"http://127.0.0.1:{endpoint.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        scraped = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert scraped.status_code == 200 and "tradepilot_probe_total 3.0" in scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/elsewhere")).status_code == 404
        # a loop that stopped turning: the heartbeat task is gone and the last beat is old
        assert endpoint._beat is not None
        endpoint._beat.cancel()
        await asyncio.sleep(0)
        endpoint.last_beat = time.monotonic() - metrics_http.STALE_SECONDS - 1
        stalled = await http.get("/health")
        assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"


async def test_healthcheck_command_probes_the_worker_and_fails_when_it_is_gone(
        endpoint: WorkerEndpoint, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEPILOT_HOST", "0.0.0.0")  # a wildcard bind: the probe asks the loopback
    monkeypatch.setenv("TRADEPILOT_WORKER_METRICS_PORT", str(endpoint.port))
    assert await asyncio.to_thread(run, ["--worker"]) == 0
    assert "healthy" in capsys.readouterr().out
    await endpoint.stop()
    endpoint._beat = None
    assert await asyncio.to_thread(run, ["--worker", "--timeout", "1"]) == 1
    assert "unreachable" in capsys.readouterr().err
    monkeypatch.delenv("TRADEPILOT_WORKER_METRICS_PORT")
    assert await asyncio.to_thread(run, ["--worker"]) == 1  # no endpoint configured is not healthy
    assert "WORKER_METRICS_PORT is not set" in capsys.readouterr().err


async def test_healthcheck_command_reports_an_answer_other_than_200(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The API probe against a server that answers 503 (a replica whose database is down)."""
    async def degraded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(degraded, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("TRADEPILOT_HOST", "127.0.0.1")
    monkeypatch.setenv("TRADEPILOT_PORT", str(port))
    try:
        assert await asyncio.to_thread(run, ["--ready"]) == 1
    finally:
        server.close()
        await server.wait_closed()
    assert f"http://127.0.0.1:{port}/api/system/health answered 503" in capsys.readouterr().err


def test_probe_urls() -> None:
    assert probe_url(host="0.0.0.0", port=8008) == "http://127.0.0.1:8008/health"
    assert probe_url(host="::", port=8008, ready=True) == "http://[::1]:8008/api/system/health"
    assert probe_url(host="10.0.0.5", port=9108) == "http://10.0.0.5:9108/health"
