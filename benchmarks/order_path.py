"""The order path: `POST /api/trading/orders` (market orders) next to a bare one-row insert.

One server process (uvicorn, the app `tradepilot serve` builds, the simulated market
running) and a separate load-generator process with 32 keep-alive connections, each one
user with its own paper account and API key, alternately buying and selling 0.001 BTC at
market. The reference is a bench-only endpoint on the same server, `POST /api/bench/rows`,
that inserts one row into the same database through the same engine and durability
settings (printed) and nothing else. Both run on SQLite and, when reachable, PostgreSQL.

    python benchmarks/order_path.py            # 10 s per variant and database
    python benchmarks/order_path.py --smoke    # a few seconds, SQLite only, for CI

Target: the order path keeps at least 40% of the bare endpoint's throughput.
"""


import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _harness as h

TARGET_RATIO = 0.40
ORDERS = "/api/trading/orders"
BARE = "/api/bench/rows"
SYMBOL = "BTC/USDT"
QUANTITY = "0.001"


# --- the server process ------------------------------------------------------------------

def _bench_table() -> Any:
    from sqlalchemy import Column, Integer, MetaData, String, Table, Text

    return Table("bench_row", MetaData(), Column("id", Integer, primary_key=True, autoincrement=True),
                 Column("payload", Text), Column("created_at", String(40)))


def build_bench_app() -> Any:
    """The app `tradepilot serve` builds, plus the bare insert this benchmark compares with."""
    from fastapi import Request

    from tradepilot.app import create_app
    from tradepilot.config import load_settings
    from tradepilot.core.deps import RuntimeDep
    from tradepilot.core.routing import api_router

    app = create_app(load_settings())
    table = _bench_table()
    bench = api_router(tags=["bench"])

    @bench.post(BARE, status_code=201)
    async def insert_row(request: Request, runtime: RuntimeDep) -> dict[str, bool]:
        body = (await request.body()).decode()
        async with runtime.db.transaction() as session:
            await session.execute(table.insert().values(payload=body, created_at=runtime.clock.now().isoformat()))
        return {"ok": True}

    app.include_router(bench)
    return app


def serve(port: int) -> None:
    h.serve(build_bench_app, port)


def prepare(database_url: str) -> None:
    """Create the bench table (not part of the product's schema) next to the migrated ones."""
    from sqlalchemy.ext.asyncio import create_async_engine

    async def create() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.run_sync(_bench_table().metadata.create_all)
        await engine.dispose()

    asyncio.run(create())


# --- the load-generator process ----------------------------------------------------------

def load(args: argparse.Namespace) -> None:
    h.install_uvloop()
    plan = json.loads(Path(args.plan).read_text())
    per_connection = [[h.build_request("POST", plan["path"], args.port, headers, body.encode())
                       for headers, body in conn] for conn in plan["connections"]]
    result = asyncio.run(h.drive(args.port, per_connection, args.warmup, args.duration))
    print(json.dumps({"counts": result.counts, "latencies_ms": result.latencies_ms,
                      "generator_cpu": result.generator_cpu}))


# --- the orchestrator --------------------------------------------------------------------

def _users(url: str, connections: int) -> list[str]:
    """One user per connection: registered, funded, with a trade-scoped API key."""
    import httpx

    keys = []
    with httpx.Client(base_url=url, timeout=60) as api:
        for _ in range(connections):
            email, password = f"bench-{uuid.uuid4().hex[:10]}@example.com", "bench passphrase long enough"
            api.post("/api/auth/register", json={"email": email, "password": password}).raise_for_status()
            token = api.post("/api/auth/login", json={"email": email, "password": password}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            key = api.post("/api/users/me/api-keys", json={"name": "bench", "scopes": ["read", "trade"]},
                           headers=auth)
            key.raise_for_status()
            account = api.get("/api/trading/accounts", headers=auth).json()["items"][0]["id"]
            api.post(f"/api/trading/accounts/{account}/deposits", json={"asset": "USDT", "amount": "10000000"},
                     headers=auth).raise_for_status()
            keys.append(key.json()["key"])
    return keys


def _wait_for_book(url: str, key: str) -> None:
    import httpx

    for _ in range(300):
        book = httpx.get(f"{url}/api/market/orderbook/BTC-USDT", headers={"X-API-Key": key}, timeout=5)
        if book.status_code == 200 and book.json().get("asks"):
            return
        time.sleep(0.1)
    raise SystemExit("the simulated market never produced an order book")


def _plan(path: str, keys: list[str], workdir: Path, name: str) -> Path:
    connections = []
    for key in keys:
        headers = {"X-API-Key": key}
        if path == ORDERS:
            requests = [(headers, json.dumps({"symbol": SYMBOL, "side": side, "type": "market", "quantity": QUANTITY}))
                        for side in ("buy", "sell")]
        else:
            requests = [(headers, json.dumps({"symbol": SYMBOL, "side": "buy", "quantity": QUANTITY}))]
        connections.append(requests)
    plan = workdir / f"plan-{name}.json"
    plan.write_text(json.dumps({"path": path, "connections": connections}))
    return plan


def _measure(port: int, plan: Path, args: argparse.Namespace, env: dict[str, str], cwd: Path,
             server_pid: int) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, __file__, "_load", "--port", str(port), "--plan", str(plan),
                             "--warmup", str(args.warmup), "--duration", str(args.duration)],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
    time.sleep(args.warmup)
    cpu_before = h.cpu_seconds(server_pid)
    out, _ = proc.communicate(timeout=args.warmup + args.duration + 300)
    cpu_after = h.cpu_seconds(server_pid)
    raw = json.loads(out)
    result = h.summary(h.LoadResult(counts=raw["counts"], latencies_ms=raw["latencies_ms"],
                                    generator_cpu=raw["generator_cpu"]), args.duration)
    result["server_cpu"] = None if cpu_before is None or cpu_after is None else \
        (cpu_after - cpu_before) / args.duration
    return result


def _drain_notifications(database_url: str, timeout: float = 120.0) -> tuple[int, float]:
    """(events still queued for the notifier when the load stopped, seconds until none are)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def poll() -> tuple[int, float]:
        engine = create_async_engine(database_url, poolclass=NullPool)
        query = text("SELECT count(*) FROM outbox_event WHERE notify = true")
        try:
            started, first = time.monotonic(), None
            while time.monotonic() - started < timeout:
                async with engine.connect() as conn:
                    queued = int((await conn.execute(query)).scalar_one())
                first = queued if first is None else first
                if queued == 0:
                    break
                await asyncio.sleep(0.2)
            return first or 0, time.monotonic() - started
        finally:
            await engine.dispose()

    return asyncio.run(poll())


def _durability(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return "SQLite WAL, synchronous=FULL, BEGIN IMMEDIATE (the platform's settings)"

    async def show() -> str:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(database_url)
        async with engine.connect() as conn:
            values = [(await conn.execute(text(f"SHOW {name}"))).scalar() for name in ("fsync", "synchronous_commit")]
        await engine.dispose()
        return f"PostgreSQL fsync={values[0]}, synchronous_commit={values[1]}"

    return asyncio.run(show())


def _run_database(database_url: str, args: argparse.Namespace, workdir: Path) -> dict[str, list[dict[str, Any]]]:
    env = h.base_env(workdir, database_url, log_level=args.log_level)
    h.run_cli(["-m", "tradepilot", "migrate"], env, workdir)
    prepare(database_url)
    results: dict[str, list[dict[str, Any]]] = {"bare insert": [], "order": []}
    with h.server_process(__file__, env, workdir) as (url, port, pid):
        keys = _users(url, args.connections)
        _wait_for_book(url, keys[0])
        plans = {"bare insert": _plan(BARE, keys, workdir, "bare"), "order": _plan(ORDERS, keys, workdir, "order")}
        for round_ in range(args.rounds):
            names = list(plans)[round_ % 2:] + list(plans)[:round_ % 2]  # alternate which runs first
            for name in names:
                run = _measure(port, plans[name], args, env, workdir, pid)
                if name == "order":  # the work orders leave behind must keep up, not pile up
                    run["backlog"], run["drain_s"] = _drain_notifications(database_url)
                results[name].append(run)
                extra = f"  ({run['errors']} not 2xx: {run['counts']})" if run["errors"] else ""
                if "backlog" in run:
                    extra += f"  notifications queued at the end: {run['backlog']}, made {run['drain_s']:.1f} s later"
                print(f"  round {round_ + 1}/{args.rounds}  {name:<12} {run['rps']:>8.0f}/s  p50 {run['p50_ms']:.1f} ms"
                      f"  p99 {run['p99_ms']:.1f} ms{extra}", flush=True)
    return results


def _report(database: str, durability: str, results: dict[str, list[dict[str, Any]]],
            args: argparse.Namespace) -> bool:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    base = med("bare insert", "rps")
    print(f"\n{database}: {durability}; {args.connections} connections, {args.rounds} round(s) x {args.duration:g} s")
    print(f"{'variant':<14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}{'errors':>8}{'server CPU':>12}"
          f"{'loadgen CPU':>13}")
    met = True
    for name in results:
        rps, errors = med(name, "rps"), sum(r["errors"] for r in results[name])
        ratio = rps / base if base else 0.0
        cpu = [r["server_cpu"] for r in results[name] if r["server_cpu"] is not None]
        server_cpu = f"{statistics.median(cpu):.0%}" if cpu else "n/a"
        if name == "order":
            met = ratio >= TARGET_RATIO and errors == 0
        print(f"{name:<14}{rps:>9.0f}{med(name, 'p50_ms'):>9.1f}{med(name, 'p99_ms'):>9.1f}{ratio:>8.0%} "
              f"{errors:>8}{server_cpu:>12}{med(name, 'generator_cpu'):>12.0%}")
    print(f"target: order path >= {TARGET_RATIO:.0%} of the bare insert -> {'met' if met else 'NOT met'}")
    return met


def _postgres_database(admin_url: str) -> tuple[str, Any] | None:
    """A scratch database next to ``admin_url`` (dropped by the returned callable), or None."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"tp_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - a missing server only skips the PostgreSQL run
        print(f"PostgreSQL not reachable at {admin_url} ({type(exc).__name__}): skipped")
        return None
    return admin_url.rsplit("/", 1)[0] + f"/{name}", lambda: asyncio.run(admin(
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_serve":
        serve(int(argv[argv.index("--port") + 1]))
        return 0
    if argv and argv[0] == "_load":
        sub = argparse.ArgumentParser()
        for name, kind in (("--port", int), ("--plan", str), ("--warmup", float), ("--duration", float)):
            sub.add_argument(name, type=kind, required=True)
        load(sub.parse_args(argv[1:]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, SQLite only, for CI")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per variant and round (10)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds; each runs both variants (2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients, one user each (32)")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                        help="a server to create a scratch database on ('' to skip PostgreSQL)")
    parser.add_argument("--log-level", default="WARNING", help="the server's log level (WARNING)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2.0 if args.smoke else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.smoke else 2.0)
    args.rounds = args.rounds or (1 if args.smoke else 2)
    if args.smoke:
        args.connections, args.postgres_url = min(args.connections, 8), ""
    print(f"order path: {args.connections} clients x market orders of {QUANTITY} {SYMBOL}, next to a bare insert")
    with tempfile.TemporaryDirectory(prefix="tp-bench-orders-") as tmp:
        workdir = Path(tmp)
        databases: list[tuple[str, str, Any]] = [("SQLite", f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None)]
        if args.postgres_url:
            scratch = _postgres_database(args.postgres_url)
            if scratch is not None:
                databases.append(("PostgreSQL", scratch[0], scratch[1]))
        verdicts = []
        for name, url, drop in databases:
            try:
                print(f"\n{name}:")
                results = _run_database(url, args, workdir)
                verdicts.append(_report(name, _durability(url), results, args))
            finally:
                if drop is not None:
                    drop()
    print(f"\noverall: target {'met' if verdicts and all(verdicts) else 'NOT met'} "
          f"on {', '.join(name for name, _, _ in databases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
