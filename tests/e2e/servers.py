"""Start real TradePilot server processes the way `make run` does, on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


class PatientTransport(httpx.AsyncHTTPTransport):
    """Waits out a 429 as a well-behaved client would (``Retry-After`` seconds, capped at 30, then
    asks again; up to 10 times):
    an end-to-end test that polls a plan-limited user's endpoints while a loaded machine slows
    what it waits for must not read the rate limiter's problem+json as the answer."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(10):
            response = await super().handle_async_request(request)
            if response.status_code != 429:
                return response
            await response.aread()
            await response.aclose()
            await asyncio.sleep(min(30.0, float(response.headers.get("Retry-After", "1"))))
        return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
    env.update({"TRADEPILOT_ARGON2_TIME_COST": "1", "TRADEPILOT_ARGON2_MEMORY_COST_KIB": "64",
                "TRADEPILOT_ARGON2_PARALLELISM": "1", "TRADEPILOT_SECRET_KEY": "e2e-secret-0123456789abcdef0123456789",
                # a day of simulated history, not two years: CPU for the tests (the market's own e2e test uses 730)
                "TRADEPILOT_MARKET_BACKFILL_DAYS": "1"})
    env.update({f"TRADEPILOT_{k.upper()}": v for k, v in settings.items()})
    return env


def tradepilot(args: list[str], env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "tradepilot", *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


class Server:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"server-{self.port}.log"
        env = {**env, "TRADEPILOT_PORT": str(self.port)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tradepilot", "serve"], env=env, cwd=cwd,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:  # generous: start-up on a loaded CI machine
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str


def make_run(cwd: Path, **settings: str) -> tuple[Server, DemoUser]:
    """`make run`'s steps on an embedded database in ``cwd``: migrate, create the demo user (its
    printed credentials read back from the console), serve. The caller waits and stops."""
    env = server_env(database_url=f"sqlite+aiosqlite:///{cwd / 'tradepilot.db'}", data_dir=str(cwd / "var"),
                     **settings)
    tradepilot(["migrate"], env, cwd)
    printed = tradepilot(["demo-user"], env, cwd)
    email = re.search(r"Demo user:\s+(\S+)", printed)
    password = re.search(r"Demo password:\s+(\S+)", printed)
    assert email and password, f"no demo credentials printed: {printed}"
    return Server(env, cwd), DemoUser(email.group(1), password.group(1))
