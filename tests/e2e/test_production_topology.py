"""The production topology of ``deploy/docker-compose.production.yml``, run without Docker.

There is no Docker engine on these machines, so this runs the same processes with the same
configuration on loopback: the ``migrate`` service once, then ``app1``, ``app2`` and the
``worker`` with their compose commands and environment (hosts and ports substituted, secrets
filled in from ``deploy/tradepilot.env.example``'s keys), behind the real nginx running
``deploy/nginx.prod.conf`` (TLS with a certificate made here), against real PostgreSQL (its own,
empty database) and Redis, scraped by a real Prometheus running ``deploy/prometheus.yml``.

Through nginx only, as a user would: TLS and the HTTP redirect, security headers, the body
size and rate limits, registration, trading, the WebSocket stream across replicas (an order
handled by one replica reaches a client connected to the other), an IP allow-list decided on
the address nginx saw (a forged X-Forwarded-For does not help). Each compose health check
command is run as written. One replica is SIGKILLed while orders flow: nginx fails over, no
acknowledged order is lost, the dead replica's leases move to live processes; it is restarted
and takes traffic again. Prometheus scraped both replicas and the worker, saw the replica
down, and its alert rules put the down target into ``pending``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from tests.e2e.deploy_support import (
    ServiceProcess,
    Topology,
    compose,
    compose_ports,
    require_binary,
    self_signed_certificate,
)
from tests.e2e.servers import free_port
from tests.support import worker_id
from tradepilot.core.lease_models import LeaseRow
from tradepilot.trading.order_models import Order

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SYMBOL = "BTC/USDT"
# Costs and intervals made test-sized; nothing here is about the topology itself.
TEST_OVERRIDES = {
    "TRADEPILOT_ARGON2_TIME_COST": "1", "TRADEPILOT_ARGON2_MEMORY_COST_KIB": "64", "TRADEPILOT_ARGON2_PARALLELISM": "1",
    "TRADEPILOT_MARKET_BACKFILL_DAYS": "1",
    "TRADEPILOT_LEASE_TTL_SECONDS": "3",
    "TRADEPILOT_AI_DIRECTION_TRAIN_ON_START": "false",
    "TRADEPILOT_MONITORING_HEARTBEAT_SECONDS": "1",
}


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(every)


@pytest.fixture
def topology_database(postgres_database: Any) -> Any:
    """An empty database of its own: the compose ``migrate`` service is what creates the schema."""
    base = postgres_database.admin_url.rpartition("/")[0]
    db_name = f"{postgres_database.name}_topology"[:63]

    async def admin(sql: str) -> None:
        engine = create_async_engine(postgres_database.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
    yield f"{base}/{db_name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


class Stack:
    """The running processes of the topology and the ways to reach them."""

    def __init__(self, topo: Topology, cert: Path, key: Path, nginx_bin: str, prometheus_bin: str,
                 prefix: str) -> None:
        self.topo, self.cert = topo, cert
        overrides = {**TEST_OVERRIDES, "TRADEPILOT_REDIS_PREFIX": prefix}
        self.migrate = topo.process("migrate", overrides)
        self.apps = {name: topo.process(name, overrides) for name in ("app1", "app2")}
        self.worker = topo.process("worker", overrides)
        conf = topo.nginx_conf(cert, key)
        self.nginx = ServiceProcess("nginx", [nginx_bin, "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
                                    dict(os.environ), topo.workdir)
        self.prometheus = ServiceProcess("prometheus", self._prometheus_command(prometheus_bin), dict(os.environ),
                                         topo.workdir)
        self.https = f"https://{topo.address('nginx:443')}"
        self.http = f"http://{topo.address('nginx:80')}"
        self.tls = ssl.create_default_context(cafile=str(cert))

    def _prometheus_command(self, binary: str) -> list[str]:
        """Compose's command for the service, its container paths made local."""
        conf = self.topo.prometheus_conf()
        data = self.topo.workdir / "prometheus" / "data"
        argv = [binary]
        for arg in compose()["services"]["prometheus"]["command"]:
            arg = arg.replace("/etc/prometheus/prometheus.yml", str(conf))
            arg = re.sub(r"^--storage\.tsdb\.path=/prometheus$", f"--storage.tsdb.path={data}", arg)
            argv.append(arg)
        argv.append(f"--web.listen-address={self.topo.address('prometheus:9090')}")
        return argv

    def app_url(self, name: str) -> str:
        return f"http://{self.topo.address(f'{name}:8008')}"

    def services(self) -> list[ServiceProcess]:
        return [*self.apps.values(), self.worker, self.nginx, self.prometheus]

    def stop(self) -> None:
        for service in self.services():
            service.stop()

    def client(self, source: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
        """A client of the public entry point, connecting from ``source`` (any 127/8 address)."""
        transport = httpx.AsyncHTTPTransport(verify=self.tls, local_address=source)
        return httpx.AsyncClient(base_url=self.https, transport=transport, timeout=20, **kwargs)

    async def scrape(self, http: httpx.AsyncClient, name: str) -> dict[str, float]:
        """A replica's /metrics, read directly (as Prometheus does), summed per sample name."""
        resp = await http.get(self.app_url(name) + "/metrics",
                              headers={"Authorization": f"Bearer {self.topo.metrics_token}"})
        assert resp.status_code == 200, resp.text
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
        return sums

    def wait_processes_ready(self, timeout: float = 240) -> None:  # generous: a loaded CI machine
        probes = {name: self.app_url(name) + "/health" for name in self.apps}
        probes["worker"] = f"http://{self.topo.address('worker:' + self._worker_port())}/health"
        probes["nginx"] = self.http + "/nginx-health"
        probes["prometheus"] = f"http://{self.topo.address('prometheus:9090')}/-/ready"
        services = {s.name: s for s in self.services()}
        deadline = time.monotonic() + timeout
        pending = dict(probes)
        while pending:
            for name, url in list(pending.items()):
                if not services[name].alive():
                    raise AssertionError(f"{name} exited: {services[name].tail()}")
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, f"not ready: {sorted(pending)}: " + "\n".join(
                f"--- {n}\n{services[n].tail()}" for n in pending)
            time.sleep(0.2)

    def _worker_port(self) -> str:
        return str(compose()["services"]["worker"]["environment"]["TRADEPILOT_WORKER_METRICS_PORT"])

    def run_healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        """The compose health check of ``name``, as written (hosts and ports made local)."""
        if name in ("postgres", "redis"):
            return self._datastore_healthcheck(name)
        service = {s.name: s for s in self.services()}[name]
        argv = self.topo.healthcheck(name, service.env)
        return subprocess.run(argv, env=service.env, cwd=self.topo.workdir, check=False, capture_output=True, text=True,
                              timeout=60)

    def _datastore_healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        argv = self.topo.healthcheck(name, {})
        env = dict(os.environ)
        if name == "postgres":  # the container's probe uses its local socket; ours, the test server's address
            url = httpx.URL(self.topo.database_url.replace("postgresql+asyncpg://", "postgresql://"))
            env.update(PGHOST=url.host, PGPORT=str(url.port or 5432))
        else:
            url = httpx.URL(self.topo.redis_url)
            argv += ["-h", url.host, "-p", str(url.port or 6379)]
        return subprocess.run(argv, env=env, check=False, capture_output=True, text=True, timeout=30)


# ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(900)
def test_production_topology(tmp_path: Path, topology_database: str, redis_url: str) -> None:
    nginx_bin, prometheus_bin = require_binary("nginx"), require_binary("prometheus")
    started = time.monotonic()
    topo = Topology(tmp_path, topology_database, redis_url, {p: free_port() for p in compose_ports()})
    cert, key = self_signed_certificate(tmp_path / "tls")
    stack = Stack(topo, cert, key, nginx_bin, prometheus_bin, f"tptopo:{worker_id()}:{time.time_ns()}:")
    since = [started]
    print()
    with ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        migrated = stack.migrate.run()  # once, before anything else starts (depends_on in compose)
        assert migrated.returncode == 0, migrated.stderr
        _phase("migrate", since)
        for service in stack.services():
            service.start()
        stack.wait_processes_ready()
        _phase("replicas, worker, nginx and Prometheus ready", since)
        names = ("app1", "app2", "worker", "nginx", "prometheus", "postgres", "redis")
        with ThreadPoolExecutor(len(names)) as pool:  # as Docker runs them: each on its own
            for name, result in zip(names, pool.map(stack.run_healthcheck, names), strict=True):
                assert result.returncode == 0, (name, result.stdout, result.stderr)
        _phase("compose health checks", since)
        asyncio.run(_scenario(stack, since))
    print(f"\nproduction topology: {time.monotonic() - started:.1f} s wall time")


def _phase(name: str, since: list[float]) -> None:
    now = time.monotonic()
    print(f"  {name}: {now - since[0]:.1f} s")
    since[0] = now


async def _scenario(stack: Stack, since: list[float]) -> None:
    engine = create_async_engine(stack.topo.database_url)
    try:
        async with httpx.AsyncClient(timeout=10) as direct:
            await _schema_is_migrated(engine)
            await _edge_behaviour(stack)
            _phase("TLS, headers and limits at the edge", since)
            async with stack.client() as http:
                alice = await _register(http, "alice")
                await _first_order(http, alice)
                _phase("registration and a first order", since)
                await _stream_across_replicas(stack, direct, http, alice)
                _phase("WebSocket across replicas", since)
            await _allow_list_through_proxy(stack)
            _phase("IP allow-list through the proxy", since)
            victim = await _kill_a_replica_while_orders_flow(stack, direct, engine, alice)
            _phase("SIGKILL while orders flow, leases moved", since)
            await _restart(stack, direct, victim)
            _phase("restart and back in nginx's rotation", since)
            await _prometheus_saw_everything(stack, direct, victim)
            _phase("Prometheus queries", since)
    finally:
        await engine.dispose()


async def _schema_is_migrated(engine: Any) -> None:
    async with engine.connect() as conn:
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert len(versions) == 1, versions


async def _edge_behaviour(stack: Stack) -> None:
    """TLS, the redirect, headers, hidden metrics, body size and rate limits: nginx's own work."""
    async with httpx.AsyncClient(timeout=10) as plain:
        resp = await plain.get(stack.http + "/api/users/me")
        assert resp.status_code == 301 and resp.headers["location"].startswith("https://"), resp
    async with stack.client() as http:
        resp = await http.get("/health")
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}
        for header, value in (("strict-transport-security", "max-age=63072000; includeSubDomains"),
                              ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                              ("referrer-policy", "no-referrer")):
            assert resp.headers.get(header) == value, (header, resp.headers)
        assert "server" not in resp.headers or "nginx/" not in resp.headers["server"]  # server_tokens off
        # nginx's request id reached the app, which echoes it: one id in both logs
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"]), resp.headers
        metrics = await http.get("/metrics")
        assert metrics.status_code == 404  # only Prometheus, on the backend network, reads them
        too_big = await http.post("/api/auth/login", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                  headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413, too_big.status_code
    # a flood on the auth routes from one address (5/s, burst 20) is cut by nginx itself before
    # it costs a replica anything: its 429 is nginx's page, not the application's problem+json
    async with stack.client(source="127.0.0.9") as flood:
        answers = await asyncio.gather(*(flood.get("/api/auth/no-such-route") for _ in range(60)))
    by_nginx = [r for r in answers if r.status_code == 429 and "json" not in r.headers.get("content-type", "")]
    passed = [r for r in answers if r.status_code in (404, 405)]
    assert len(by_nginx) >= 10 and len(passed) >= 20 and len(by_nginx) + len(passed) == 60, sorted(
        (r.status_code, r.headers.get("content-type")) for r in answers)


async def _register(http: httpx.AsyncClient, who: str) -> dict[str, str]:
    email, password = f"{who}-{uuid.uuid4().hex[:8]}@example.com", f"{who} trades in production"
    resp = await http.post("/api/auth/register", json={"email": email, "password": password})
    assert resp.status_code == 201, resp.text
    login = await http.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _order_body() -> dict[str, str]:
    return {"symbol": SYMBOL, "side": "buy", "type": "market", "quantity": "0.0005",
            "client_order_id": f"topo-{uuid.uuid4().hex[:16]}"}


async def _first_order(http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """The feed owner (one of the replicas) needs a moment for its first prices."""
    deadline = time.monotonic() + 60
    while True:
        resp = await http.post("/api/trading/orders", json=_order_body(), headers=auth)
        if resp.status_code == 201:
            assert resp.json()["status"] == "filled", resp.json()
            return
        assert time.monotonic() < deadline, f"no order accepted: {resp.status_code} {resp.text}"
        await asyncio.sleep(0.5)


async def _stream_across_replicas(stack: Stack, direct: httpx.AsyncClient, http: httpx.AsyncClient,
                                  auth: dict[str, str]) -> None:
    """A WebSocket client connected (through nginx) to one replica receives the order events of
    orders that the *other* replica handled: which replica did what is read from their metrics."""
    token = auth["Authorization"].removeprefix("Bearer ")
    ws_url = stack.https.replace("https://", "wss://") + "/api/ws"
    async with connect(ws_url, ssl=stack.tls, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await ws.send(json.dumps({"type": "subscribe", "channels": ["account"]}))
        seen: list[dict[str, Any]] = []

        async def read() -> None:
            async for raw in ws:
                seen.append(json.loads(raw))

        reader = asyncio.create_task(read())
        try:
            await _until(lambda: _async(any(m["type"] == "subscribed" for m in seen)), "the subscription", 15)
            holding = [name for name in stack.apps
                       if (await stack.scrape(direct, name)).get("tradepilot_ws_clients", 0) >= 1]
            assert len(holding) == 1, holding
            [other] = [name for name in stack.apps if name != holding[0]]
            placed_on_other: list[str] = []
            for _ in range(8):  # round robin: some of these go to the other replica
                before = (await stack.scrape(direct, other)).get("tradepilot_orders_total", 0)
                resp = await http.post("/api/trading/orders", json=_order_body(), headers=auth)
                assert resp.status_code == 201, resp.text
                if (await stack.scrape(direct, other)).get("tradepilot_orders_total", 0) > before:
                    placed_on_other.append(resp.json()["id"])
                if len(placed_on_other) >= 2:
                    break
            assert placed_on_other, f"nginx sent no order to {other}"

            def streamed() -> set[str]:
                return {m["data"]["payload"]["order"]["id"] for m in seen
                        if m["type"] == "event" and m["data"]["type"] == "order.updated"}

            await _until(lambda: _async(set(placed_on_other) <= streamed()),
                         f"events of orders handled by {other} on the socket held by {holding[0]}", 20)
        finally:
            reader.cancel()


async def _async(value: bool) -> bool:
    return value


async def _allow_list_through_proxy(stack: Stack) -> None:
    """The app decides on the address nginx saw (X-Forwarded-For from the trusted proxy), not
    the peer (always nginx) and not what a client writes into the header."""
    async with stack.client(source="127.0.0.2") as home, stack.client(source="127.0.0.3") as elsewhere:
        auth = await _register(home, "bob")
        saved = await home.put("/api/users/me/settings", json={"ip_allowlist": ["127.0.0.2/32"]}, headers=auth)
        # accepted only because the app saw 127.0.0.2: from nginx's own address it refuses a lock-out
        assert saved.status_code == 200, saved.text
        for _ in range(4):  # both replicas (round robin) say the same
            assert (await home.get("/api/users/me", headers=auth)).status_code == 200
            refused = await elsewhere.get("/api/users/me", headers={**auth, "X-Forwarded-For": "127.0.0.2"})
            assert refused.status_code == 403 and refused.json()["code"] == "ip_not_allowed", refused.text


async def _lease_holders(engine: Any) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(LeaseRow.name, LeaseRow.holder))).all()
    return {name: int(holder.split(":")[1]) for name, holder in rows}


async def _kill_a_replica_while_orders_flow(stack: Stack, direct: httpx.AsyncClient, engine: Any,
                                            auth: dict[str, str]) -> str:
    pids = {name: app.proc.pid for name, app in stack.apps.items() if app.proc is not None}
    holders = await _lease_holders(engine)
    held = {name: sorted(lease for lease, pid in holders.items() if pid == pids[name]) for name in pids}
    victim = max(held, key=lambda name: len(held[name]))
    assert held[victim], f"no replica holds a lease: {holders}"
    [survivor] = [name for name in pids if name != victim]

    acknowledged: dict[str, str] = {}  # client_order_id → order id
    failed: dict[str, dict[str, str]] = {}  # client_order_id → body (retried below with its key)
    attempted: set[str] = set()

    async def flow(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            body = _order_body()
            attempted.add(body["client_order_id"])
            headers = {**auth, "Idempotency-Key": body["client_order_id"]}
            try:
                resp = await http.post("/api/trading/orders", json=body, headers=headers)
                if resp.status_code == 201:
                    acknowledged[body["client_order_id"]] = resp.json()["id"]
                else:
                    failed[body["client_order_id"]] = body
            except httpx.HTTPError:
                failed[body["client_order_id"]] = body
            await asyncio.sleep(0.08)

    async with stack.client() as http:
        stop = asyncio.Event()
        flowing = asyncio.create_task(flow(http, stop))
        await _until(lambda: _async(len(acknowledged) >= 4), "orders flowing before the kill", timeout=30)
        # Prometheus (1 s scrapes) has seen both replicas' order counters before one dies: with
        # fast orders, 4 of them can pass and the victim die between two of its scrapes
        apps = {stack.topo.address(f"{name}:8008") for name in stack.apps}

        async def both_counted() -> bool:
            return set(await _prometheus_query(stack, direct, "sum by (instance) (tradepilot_orders_total)")) == apps

        await _until(both_counted, "Prometheus to scrape orders from both replicas", timeout=30, every=0.5)
        stack.apps[victim].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        before_kill = len(acknowledged)
        await asyncio.to_thread(stack.apps[victim].proc.wait, 10)  # type: ignore[union-attr]
        await _until(lambda: _async(len(acknowledged) >= before_kill + 8), "orders flowing after the kill",
                     timeout=30)
        stop.set()
        await flowing
        assert len(failed) <= 2, f"nginx did not fail over: {len(failed)} orders failed"  # those in flight at the kill
        for client_order_id, body in failed.items():  # the client's retry, with the same key
            resp = await http.post("/api/trading/orders", json=body,
                                   headers={**auth, "Idempotency-Key": client_order_id})
            assert resp.status_code in (201, 409), resp.text  # 409: the dead process's in-flight lock
            if resp.status_code == 201:
                acknowledged[client_order_id] = resp.json()["id"]
        # every acknowledged order is there, through the API and in the database
        for order_id in acknowledged.values():
            resp = await http.get(f"/api/trading/orders/{order_id}", headers=auth)
            assert resp.status_code == 200 and resp.json()["status"] == "filled", resp.text
    async with engine.connect() as conn:
        stored = (await conn.execute(select(Order.client_order_id, Order.id).where(
            Order.client_order_id.in_(attempted)))).all()
    stored_ids = {coid: str(oid) for coid, oid in stored}
    assert {k: stored_ids.get(k) for k in acknowledged} == acknowledged  # none lost, none replaced
    assert set(stored_ids) <= attempted and len(stored) == len(stored_ids)  # nothing twice

    # the dead replica's leases moved to live processes (the survivor or the worker)
    alive = {stack.apps[survivor].proc.pid, stack.worker.proc.pid}  # type: ignore[union-attr]

    async def moved() -> bool:
        now = await _lease_holders(engine)
        return all(now.get(lease) in alive for lease in held[victim])

    await _until(moved, f"{victim}'s leases {held[victim]} to move", timeout=30)
    result = stack.run_healthcheck(victim)
    assert result.returncode == 1 and "unreachable" in result.stderr, result  # its probe tells Docker
    await _down_alert_pending(stack, direct, victim)
    return victim


async def _down_alert_pending(stack: Stack, direct: httpx.AsyncClient, victim: str) -> None:
    """Prometheus scraped the dead replica, found it down, and its rule started the alert."""
    instance = stack.topo.address(f"{victim}:8008")
    base = f"http://{stack.topo.address('prometheus:9090')}"

    async def pending() -> bool:
        alerts = (await direct.get(base + "/api/v1/alerts")).json()["data"]["alerts"]
        return any(a["labels"]["alertname"] == "TradePilotTargetDown" and a["labels"]["instance"] == instance
                   and a["state"] == "pending" for a in alerts)

    await _until(pending, f"TradePilotTargetDown pending for {instance}", timeout=20, every=0.5)


async def _restart(stack: Stack, direct: httpx.AsyncClient, victim: str) -> None:
    app = stack.apps[victim]
    app.start()  # compose's restart: the same command and environment
    url = stack.app_url(victim) + "/health"

    async def ready() -> bool:
        assert app.alive(), app.tail()
        try:
            return (await direct.get(url, timeout=1)).status_code == 200
        except httpx.HTTPError:
            return False

    await _until(ready, f"{victim} to start again", timeout=240, every=0.2)
    result = stack.run_healthcheck(victim)
    assert result.returncode == 0, result
    # nginx takes it back after fail_timeout: requests through the entry point reach it again
    before = (await stack.scrape(direct, victim)).get("tradepilot_http_requests_total", 0)
    async with stack.client() as http:

        async def serving() -> bool:
            assert (await http.get("/api/system/health")).status_code == 200
            return (await stack.scrape(direct, victim)).get("tradepilot_http_requests_total", 0) > before + 1

        await _until(serving, f"nginx to send traffic to the restarted {victim}", timeout=30, every=0.3)


async def _prometheus_query(stack: Stack, direct: httpx.AsyncClient, expr: str) -> dict[str, float]:
    """An instant query: {instance: value}."""
    base = f"http://{stack.topo.address('prometheus:9090')}/api/v1/query"
    body = (await direct.get(base, params={"query": expr})).json()
    assert body["status"] == "success", body
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in body["data"]["result"]}


async def _prometheus_saw_everything(stack: Stack, direct: httpx.AsyncClient, victim: str) -> None:
    async def query(expr: str) -> dict[str, float]:
        return await _prometheus_query(stack, direct, expr)

    apps = {stack.topo.address(f"{name}:8008") for name in stack.apps}
    worker = stack.topo.address("worker:" + stack._worker_port())
    assert await query('max_over_time(up{job="tradepilot-api"}[10m])') == {a: 1.0 for a in apps}
    assert await query('max_over_time(up{job="tradepilot-worker"}[10m])') == {worker: 1.0}
    # the kill was seen: the victim was down for at least one scrape
    assert (await query(f'min_over_time(up{{instance="{stack.topo.address(victim + ":8008")}"}}[10m])')) == {
        stack.topo.address(victim + ":8008"): 0.0}
    # the application's own series, from every target: both replicas took orders
    orders = await query("sum by (instance) (max_over_time(tradepilot_orders_total[10m]))")
    assert set(orders) == apps and all(v > 0 for v in orders.values()), orders

    async def worker_series() -> bool:
        return worker in await query('max_over_time(tradepilot_outbox_backlog{job="tradepilot-worker"}[10m])')

    await _until(worker_series, "the worker's own metrics in Prometheus", timeout=10, every=0.5)
