"""`make run`'s steps on a fresh directory: migrate, demo user, serve on a port, log in."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.e2e.servers import Server, server_env, tradepilot

pytestmark = pytest.mark.slow


def test_fresh_install_serves_and_demo_user_logs_in(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = server_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tradepilot.db'}", data_dir=str(tmp_path / "var"))
    tradepilot(["migrate"], env, tmp_path)
    printed = tradepilot(["demo-user"], env, tmp_path)
    email = re.search(r"Demo user:\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
    password = re.search(r"Demo password:\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
    assert email == "demo@example.com"
    server = Server(env, tmp_path)
    try:
        server.wait_ready()
        resp = httpx.post(server.url + "/api/auth/login", json={"email": email, "password": password})
        assert resp.status_code == 200, resp.text
        tokens = resp.json()
        assert tokens["token_type"] == "bearer" and tokens["refresh_token"].startswith("rt_")
        me = httpx.get(server.url + "/api/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["email"] == email
        health = httpx.get(server.url + "/api/system/health").json()
        assert health["components"]["database"] == "up"
    finally:
        server.stop()
    # running demo-user again gives a new working password (the old one stops working)
    second = re.search(r"Demo password:\s+(\S+)", tradepilot(["demo-user"], env, tmp_path)).group(1)  # type: ignore[union-attr]
    assert second != password
    # the server's logs are JSON lines with a request id, and never contain the password or a token
    log = server.log.read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "tradepilot.access"]
    assert access and all(r.get("request_id") for r in access)
    assert any(r.get("user_id") for r in access if r.get("route") == "/api/users/me")
    assert password not in log and tokens["access_token"] not in log and tokens["refresh_token"] not in log
