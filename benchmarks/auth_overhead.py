"""Authentication overhead: `GET /api/users/me` with a JWT, with an API key, and without auth.

A real server (uvicorn, one process, the app `tradepilot serve` builds) runs on SQLite (or
the database given), and a separate load-generator process (a lean keep-alive HTTP/1.1
client on asyncio, so the generator is not the bottleneck) drives it with many concurrent
connections. Three variants of the same handler are measured, interleaved over rounds:

* ``no auth``  — a bench-only twin of the handler that loads the same user by a fixed id.
  It exists only in the app this script builds for its own server process; the shipped
  app has no unauthenticated twin.
* ``JWT``      — ``Authorization: Bearer <access token>``: signature, claims and the
  live-session check (the session must not be revoked; served from the per-process cache
  that the bus invalidates, reloaded from the database every ``session_cache_seconds``).
* ``API key``  — ``X-API-Key``: lookup, HMAC of the secret, the same live check.

Rate limiting is switched off for the run: it would answer 429 long before the server is
saturated (it is a separate cost, with its own budget per user).

    python benchmarks/auth_overhead.py            # 3 rounds x 10 s per variant
    python benchmarks/auth_overhead.py --smoke    # a few seconds, for CI

Target: each authenticated variant keeps at least 70% of the unauthenticated throughput.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import _harness as h

TARGET_RATIO = 0.70
ME = "/api/users/me"
TWIN = "/api/bench/users/me"  # only in this script's server
PASSWORD = "bench passphrase that is long enough"


# --- the server process ------------------------------------------------------------------

def build_bench_app() -> Any:
    """The app `tradepilot serve` builds, plus the unauthenticated twin of `GET /api/users/me`."""
    from tradepilot.app import create_app
    from tradepilot.config import load_settings
    from tradepilot.core.deps import DbSession
    from tradepilot.core.routing import api_router
    from tradepilot.identity.deps import Identity
    from tradepilot.identity.router import profile_of
    from tradepilot.identity.schemas import UserProfile

    user_id = uuid.UUID(os.environ["BENCH_USER_ID"])
    app = create_app(load_settings())
    twin = api_router(tags=["bench"])

    @twin.get(TWIN, response_model=UserProfile)
    async def me_without_auth(db: DbSession, identity: Identity) -> UserProfile:
        """The body of `get_profile` with the principal's id replaced by a constant."""
        return profile_of(await identity.get_user(db, user_id=user_id))

    app.include_router(twin)
    return app


def serve(port: int) -> None:
    h.serve(build_bench_app, port)


# --- the load-generator process ----------------------------------------------------------

def load(args: argparse.Namespace) -> None:
    h.install_uvloop()
    headers = dict([tuple(part.strip() for part in args.header.split(":", 1))]) if args.header else {}
    request = h.build_request("GET", args.path, args.port, headers)
    result = asyncio.run(h.drive(args.port, [[request]] * args.connections, args.warmup, args.duration))
    print(json.dumps({"counts": result.counts, "seconds": args.duration, "generator_cpu": result.generator_cpu}))


# --- the orchestrator --------------------------------------------------------------------

def _login(url: str, email: str) -> str:
    """A fresh access token (they live 15 minutes: one per round)."""
    import httpx

    tokens = httpx.post(url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    tokens.raise_for_status()
    return str(tokens.json()["access_token"])


def _api_key(url: str, access: str) -> str:
    """A read-scoped API key (the free plan allows three: one for the whole run)."""
    import httpx

    key = httpx.post(url + "/api/users/me/api-keys", json={"name": "bench", "scopes": ["read"]},
                     headers={"Authorization": f"Bearer {access}"}, timeout=30)
    key.raise_for_status()
    return str(key.json()["key"])


def _measure(port: int, path: str, header: str, args: argparse.Namespace, env: dict[str, str],
             cwd: Path, server_pid: int) -> dict[str, Any]:
    per_process = max(1, args.connections // args.load_processes)
    procs = [subprocess.Popen([sys.executable, __file__, "_load", "--port", str(port), "--path", path,
                               "--header", header, "--connections", str(per_process), "--warmup", str(args.warmup),
                               "--duration", str(args.duration)], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)
             for _ in range(args.load_processes)]
    time.sleep(args.warmup + 0.2)  # the server's CPU is read over the measured window only
    cpu_before, started = h.cpu_seconds(server_pid), time.monotonic()
    time.sleep(max(0.0, args.duration - 0.4))
    cpu_after, elapsed = h.cpu_seconds(server_pid), time.monotonic() - started
    results = [json.loads(p.communicate(timeout=args.warmup + args.duration + 120)[0]) for p in procs]
    counts: dict[str, int] = {}
    for r in results:
        for status, n in r["counts"].items():
            counts[status] = counts.get(status, 0) + n
    ok = counts.get("200", 0)
    rps = ok / args.duration
    # server CPU per request: robust on a busy machine, where wall-clock req/s also measures
    # how much CPU the other processes left to the server
    cpu_per_request = None
    if cpu_before is not None and cpu_after is not None and rps > 0:
        cpu_per_request = (cpu_after - cpu_before) / (rps * elapsed)
    return {"rps": rps, "errors": sum(n for s, n in counts.items() if s != "200"), "counts": counts,
            "cpu_per_request": cpu_per_request, "server_cpu_share": None if cpu_before is None or cpu_after is None
            else (cpu_after - cpu_before) / elapsed,
            "generator_cpu": max(r["generator_cpu"] for r in results) / (args.warmup + args.duration)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all, for CI")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per variant and round (10)")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each run (2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds; each runs every variant once (3)")
    parser.add_argument("--connections", type=int, default=None, help="concurrent keep-alive connections (64)")
    parser.add_argument("--load-processes", type=int, default=1, help="load-generator processes (1)")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--session-cache-seconds", type=float, default=3.0,
                        help="TRADEPILOT_SESSION_CACHE_SECONDS of the server (3, the default; 0 checks the "
                             "database on every request)")
    parser.add_argument("--log-level", default="INFO", help="the server's log level (INFO, as deployed)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.duration = args.duration or (2.0 if smoke else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if smoke else 2.0)
    args.rounds = args.rounds or (1 if smoke else 3)
    args.connections = args.connections or (16 if smoke else 64)

    with tempfile.TemporaryDirectory(prefix="tp-bench-auth-") as tmp:
        workdir = Path(tmp)
        database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        env = h.base_env(workdir, database_url, session_cache_seconds=str(args.session_cache_seconds),
                         log_level=args.log_level)
        h.run_cli(["-m", "tradepilot", "migrate"], env, workdir)
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        created = h.run_cli(["-m", "tradepilot", "admin", "create-user", "--email", email, "--password-stdin"], env,
                            workdir, stdin=PASSWORD + "\n")
        user_id = re.search(r"\(id ([0-9a-f-]{36})\)", created).group(1)  # type: ignore[union-attr]
        with h.server_process(__file__, {**env, "BENCH_USER_ID": user_id}, workdir) as (url, port, pid):
            results = _benchmark(url, port, email, args, env, workdir, pid)
    return _report(results, args, database_url)


def _benchmark(url: str, port: int, email: str, args: argparse.Namespace, env: dict[str, str],
               cwd: Path, server_pid: int) -> dict[str, list[dict[str, Any]]]:
    names = ["no auth", "JWT", "API key"]
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    key = _api_key(url, _login(url, email))
    for round_ in range(args.rounds):
        access = _login(url, email)
        variants = {"no auth": (TWIN, ""), "JWT": (ME, f"Authorization: Bearer {access}"),
                    "API key": (ME, f"X-API-Key: {key}")}
        order = names[round_ % 3:] + names[:round_ % 3]  # rotate, so no variant always runs first
        for name in order:
            path, header = variants[name]
            run = _measure(port, path, header, args, env, cwd, server_pid)
            results[name].append(run)
            extra = f"  ({run['errors']} not 200: {run['counts']})" if run["errors"] else ""
            cpu = (f"  {run['cpu_per_request'] * 1e6:>7.0f} us server CPU/request, server had "
                   f"{run['server_cpu_share']:.0%} of a core") if run["cpu_per_request"] else ""
            print(f"  round {round_ + 1}/{args.rounds}  {name:<8} {run['rps']:>9.0f} req/s{cpu}{extra}", flush=True)
    return results


def _report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace, database_url: str) -> int:
    base = statistics.median(r["rps"] for r in results["no auth"])
    base_cpu = _median_cpu(results["no auth"])
    dialect = database_url.split("+", 1)[0].split(":", 1)[0]
    print()
    print(f"GET {ME} on uvicorn (1 process), {dialect}, {args.connections} connections, "
          f"{args.rounds} round(s) x {args.duration:g} s per variant, session cache {args.session_cache_seconds:g} s")
    print(f"{'variant':<10}{'req/s (median)':>16}{'min':>8}{'max':>8}{'vs no auth':>12}"
          f"{'CPU us/req':>12}{'req/CPU-s':>11}{'vs no auth':>12}{'errors':>8}")
    verdict_ok, cpu_ok = True, True
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        median = statistics.median(rps)
        ratio = median / base if base else 0.0
        cpu = _median_cpu(runs)
        cpu_ratio = base_cpu / cpu if cpu and base_cpu else None
        errors = sum(r["errors"] for r in runs)
        mark = ""
        if name != "no auth":
            ok = ratio >= TARGET_RATIO and errors == 0
            verdict_ok &= ok
            cpu_ok &= cpu_ratio is not None and cpu_ratio >= TARGET_RATIO
            mark = "  ok" if ok else "  BELOW TARGET" if errors == 0 else "  ERRORS"
        cpu_cols = (f"{cpu * 1e6:>12.0f}{1 / cpu:>11.0f}{cpu_ratio:>11.0%} " if cpu and cpu_ratio
                    else f"{'n/a':>12}{'n/a':>11}{'n/a':>12}")
        print(f"{name:<10}{median:>16.0f}{min(rps):>8.0f}{max(rps):>8.0f}{ratio:>11.0%} {cpu_cols}{errors:>8}{mark}")
    generator = max(r["generator_cpu"] for runs in results.values() for r in runs)
    share = max((r["server_cpu_share"] or 0) for runs in results.values() for r in runs)
    print(f"target: authenticated >= {TARGET_RATIO:.0%} of no auth -> req/s: {'met' if verdict_ok else 'NOT met'}; "
          f"per server CPU-second: {'met' if cpu_ok else 'NOT met'}")
    print(f"load generator used at most {generator:.0%} of a core; the server at most {share:.0%} of a core"
          + ("  (far below 100%: the machine is busy, trust the CPU columns over req/s)" if share < 0.8 else ""))
    return 0


def _median_cpu(runs: list[dict[str, Any]]) -> float | None:
    values = [r["cpu_per_request"] for r in runs if r["cpu_per_request"]]
    return statistics.median(values) if values else None


def _internal(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["_serve", "_load"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=ME)
    parser.add_argument("--header", default="")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "_serve":
        serve(args.port)
    else:
        load(args)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_serve", "_load"):
        raise SystemExit(_internal(sys.argv[1:]))
    raise SystemExit(main())
