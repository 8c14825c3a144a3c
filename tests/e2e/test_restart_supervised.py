"""`POST /api/system/restart` under a supervisor that restarts the server on the documented exit
code (75), as systemd's `Restart=on-failure` or Docker's `restart: on-failure` would: an in-flight
request is answered, new connections are refused while it drains, and the server comes back."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.e2e.servers import free_port, server_env, tradepilot
from tradepilot.ops.monitoring.restart import RESTART_EXIT_CODE

pytestmark = pytest.mark.slow

SUPERVISOR = f'''
import signal, subprocess, sys
child = None

def forward(signum, frame):
    if child is not None:
        child.terminate()
        child.wait()
    sys.exit(0)

signal.signal(signal.SIGTERM, forward)
while True:
    child = subprocess.Popen([sys.executable, "-m", "tradepilot", "serve"])
    print("child", child.pid, flush=True)
    code = child.wait()
    print("exit", code, flush=True)
    if code != {RESTART_EXIT_CODE}:
        sys.exit(code)
'''
ADMIN_PASSWORD = "an operator's long passphrase"
USER_PASSWORD = "a user's long passphrase!"


def wait_until(condition, what: str, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout  # generous: start-up on a loaded CI machine
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def supervisor_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if re.match(r"^(child|exit) -?\d+$", line)]


def test_restart_finishes_the_in_flight_request_and_comes_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}", data_dir=str(tmp_path / "var"),
                     port=str(port), session_cache_seconds="0", log_file=str(tmp_path / "logs" / "tradepilot.log"))
    tradepilot(["migrate"], env, tmp_path)
    tradepilot(["admin", "create-user", "--email", "ops@example.com", "--admin", "--password", ADMIN_PASSWORD],
               env, tmp_path)
    (tmp_path / "supervisor.py").write_text(SUPERVISOR)
    log = tmp_path / "supervisor.log"
    supervisor = subprocess.Popen([sys.executable, str(tmp_path / "supervisor.py")], env=env, cwd=tmp_path,
                                  stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: answers(url), "the server")
        http = httpx.Client(base_url=url, timeout=30)
        # an administrator with 2FA, who re-enters the password
        tokens = http.post("/api/auth/login", json={"email": "ops@example.com", "password": ADMIN_PASSWORD}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        secret = http.post("/api/auth/2fa/enable", json={"password": ADMIN_PASSWORD}, headers=headers).json()["secret"]
        recovery = http.post("/api/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()},
                             headers=headers).json()["recovery_codes"]
        tokens = http.post("/api/auth/login", json={"email": "ops@example.com", "password": ADMIN_PASSWORD,
                                                    "otp": recovery[0]}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        before = http.get("/api/system/status", headers=headers).json()
        assert http.post("/api/auth/reauthenticate", json={"password": ADMIN_PASSWORD},
                         headers=headers).status_code == 200
        registered = http.post("/api/auth/register", json={"email": "user@example.com", "password": USER_PASSWORD})
        assert registered.status_code == 201, registered.text

        # a login in flight: headers and half of the body sent, the rest after the restart began
        body = f'{{"email": "user@example.com", "password": "{USER_PASSWORD}"}}'.encode()
        in_flight = socket.create_connection(("127.0.0.1", port), timeout=60)
        in_flight.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])
        time.sleep(2)  # generous: the server has parsed the headers and waits for the body
        accepted = http.post("/api/system/restart", headers=headers)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["exit_code"] == RESTART_EXIT_CODE

        wait_until(lambda: refuses(port), "the server to stop accepting connections", timeout=30)
        assert supervisor_lines(log)[-1].startswith("child")  # still draining: the old process has not exited
        in_flight.sendall(body[20:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = in_flight.recv(65536)
            if not chunk:
                break
            answer += chunk
        in_flight.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b'"access_token"' in answer

        wait_until(lambda: answers(url), "the restarted server")
        lines = supervisor_lines(log)
        assert [line.split()[0] for line in lines] == ["child", "exit", "child"], lines
        assert lines[1] == f"exit {RESTART_EXIT_CODE}"
        assert lines[0] != lines[2]  # a new process

        tokens = http.post("/api/auth/login", json={"email": "ops@example.com", "password": ADMIN_PASSWORD,
                                                    "otp": recovery[1]}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        after = http.get("/api/system/status", headers=headers).json()
        assert after["replica_id"] != before["replica_id"]
        assert after["uptime_seconds"] < 120
        # the log file (shared by both processes) has the request for the restart and the old process's exit
        logged = http.get("/api/system/logs", params={"source": "file", "logger": "tradepilot.ops.restart"},
                          headers=headers).json()["items"]
        assert [e["message"] for e in logged][:2] == ["exiting for a restart", "graceful restart requested"]
        # the old process ended its uptime segment cleanly, and the gap until the new one counts as down
        uptime = http.get("/api/monitoring/uptime", headers=headers).json()["windows"][0]
        assert uptime["down_seconds"] > 0 and len(uptime["outages"]) == 1
    finally:
        supervisor.terminate()
        try:
            supervisor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
