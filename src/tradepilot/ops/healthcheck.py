"""``tradepilot healthcheck``: the container health probe (Docker ``HEALTHCHECK``, compose).

Slim images have no curl or wget, and the probe must not cost seconds of CPU every few
seconds, so this asks the local process over HTTP with the standard library only and
never imports the application (``cli.main`` dispatches here before loading the other
commands). Exit 0 when healthy, 1 otherwise, with one line saying why.

- ``tradepilot healthcheck`` — the API on ``TRADEPILOT_PORT``: ``GET /health`` (liveness:
  the process answers). ``--ready`` asks ``/api/system/health`` instead (database and Redis
  up), which is what a load balancer should wait for before sending traffic.
- ``tradepilot healthcheck --worker`` — the worker's own endpoint on
  ``TRADEPILOT_WORKER_METRICS_PORT`` (``jobs/metrics_http.py``): ``GET /health`` answers 200
  only while the worker's event loop is turning.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from tradepilot.cli import command
from tradepilot.config import ConfigError, load_settings

# A wildcard bind address is not an address to connect to: ask the loopback instead.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worker", action="store_true", help="probe the worker (TRADEPILOT_WORKER_METRICS_PORT)")
    parser.add_argument("--ready", action="store_true", help="readiness: database and Redis must be up")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds before the probe fails")


def probe_url(*, host: str, port: int, ready: bool = False) -> str:
    host = _WILDCARDS.get(host, host)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}{'/api/system/health' if ready else '/health'}"


def check(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, reason). Redirects are not followed: a health endpoint answers itself."""
    request = urllib.request.Request(url, headers={"User-Agent": "tradepilot-healthcheck"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url} unreachable: {reason}"
    if status != 200:
        return False, f"{url} answered {status}"
    return True, f"{url} answered 200"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradepilot healthcheck")
    _arguments(parser)
    return _healthcheck(parser.parse_args(argv))


@command("healthcheck", "probe this container's API (or --worker) over HTTP; exit 0 when healthy", _arguments)
def _healthcheck(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if args.worker:
        if settings.worker_metrics_port is None:
            print("unhealthy: TRADEPILOT_WORKER_METRICS_PORT is not set, the worker has no endpoint", file=sys.stderr)
            return 1
        url = probe_url(host=settings.host, port=settings.worker_metrics_port)
    else:
        url = probe_url(host=settings.host, port=settings.port, ready=args.ready)
    healthy, reason = check(url, args.timeout)
    print(("healthy: " if healthy else "unhealthy: ") + reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
