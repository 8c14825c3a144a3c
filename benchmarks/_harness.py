"""What the HTTP benchmarks share: server processes on loopback and a lean load generator.

The load generator is a keep-alive HTTP/1.1 client on asyncio (uvloop when installed), one
task per connection, so that the generator — run in its own process — is not the
bottleneck; it reports status counts, per-request latencies and its own CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


# --- processes ---------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(workdir: Path, database_url: str, **settings: str) -> dict[str, str]:
    """A clean TRADEPILOT_ environment: this run's database and data folder, rate limits off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
    env.update({"TRADEPILOT_DATABASE_URL": database_url, "TRADEPILOT_SECRET_KEY": SECRET,
                "TRADEPILOT_DATA_DIR": str(workdir / "var"), "TRADEPILOT_RATE_LIMIT_ENABLED": "false",
                "TRADEPILOT_MARKET_BACKFILL_DAYS": "0"})
    env.update({f"TRADEPILOT_{k.upper()}": v for k, v in settings.items()})
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> str:
    out = subprocess.run([sys.executable, *args], check=False, env=env, cwd=cwd, input=stdin, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def server_process(script: str, env: dict[str, str], workdir: Path, *extra: str) -> Iterator[tuple[str, int, int]]:
    """``python <script> _serve --port P`` until the block ends; yields (url, port, pid)."""
    port = free_port()
    log = workdir / f"server-{port}.log"
    proc = subprocess.Popen([sys.executable, script, "_serve", "--port", str(port), *extra], env=env, cwd=workdir,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield url, port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve(build_app: Any, port: int) -> None:
    """Run the app ``build_app()`` returns the way `tradepilot serve` does (its logging, its options)."""
    import uvicorn

    from tradepilot.config import load_settings
    from tradepilot.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = build_app()
    profile_to = os.environ.get("BENCH_PROFILE")  # a file: cProfile the whole server into it
    if not profile_to:
        uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, proxy_headers=False, ws_ping_interval=20)
        return
    import cProfile
    import signal

    def stop(signum: int, frame: object) -> None:  # uvicorn re-raises the SIGTERM it handled
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, proxy_headers=False, ws_ping_interval=20)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)


# --- the load generator ------------------------------------------------------------------

@dataclass
class LoadResult:
    counts: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # of the measured (post warm-up) requests
    generator_cpu: float = 0.0


def build_request(method: str, path: str, port: int, headers: dict[str, str], body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> bytes | None:
    """The status line of one response, its body skipped; None when the server closed."""
    status_line = await reader.readline()
    if not status_line:
        return None
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status_line


async def _connection(port: int, requests: list[bytes], start: float, stop: float, result: LoadResult) -> None:
    """Send ``requests`` round-robin on one keep-alive connection until ``stop``."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while True:
            sent = loop.time()
            if sent >= stop:
                return
            writer.write(requests[n % len(requests)])
            n += 1
            status_line = await _read_response(reader)
            if status_line is None:
                result.counts["closed"] = result.counts.get("closed", 0) + 1
                return
            if sent >= start:  # requests started during the warm-up are not counted
                status = status_line.split(b" ", 2)[1].decode()
                result.counts[status] = result.counts.get(status, 0) + 1
                result.latencies_ms.append((loop.time() - sent) * 1000)
    finally:
        writer.close()


async def drive(port: int, per_connection: list[list[bytes]], warmup: float, duration: float) -> LoadResult:
    """One connection per entry of ``per_connection`` (its requests, sent in turn)."""
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + duration
    result = LoadResult()
    cpu = time.process_time()
    await asyncio.gather(*(_connection(port, reqs, start, stop, result) for reqs in per_connection))
    result.generator_cpu = time.process_time() - cpu
    return result


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(result: LoadResult, duration: float) -> dict[str, Any]:
    ok = sum(n for status, n in result.counts.items() if status.startswith("2"))
    return {"rps": ok / duration, "ok": ok, "errors": sum(result.counts.values()) - ok, "counts": result.counts,
            "p50_ms": percentile(result.latencies_ms, 50), "p99_ms": percentile(result.latencies_ms, 99),
            "generator_cpu": result.generator_cpu / duration}
