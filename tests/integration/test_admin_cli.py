"""`tradepilot admin create-user`: a real process creates accounts the API then logs in."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.servers import server_env
from tests.helpers import bearer, login, unique_email
from tests.integration.admin_support import set_account
from tradepilot.identity.models import SecurityEvent

pytestmark = pytest.mark.slow


async def _cli(args: list[str], database_url: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = server_env(database_url=database_url, data_dir=str(cwd / "var"))
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "tradepilot", "admin", *args], env=env,
                                   cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


async def test_create_admin_with_a_generated_password(client, runtime, database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    email = unique_email("ops")
    out = await _cli(["create-user", "--email", email.upper(), "--admin"], database_url, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"created admin {email}" in out.stdout and "two-factor" in out.stderr
    password = re.search(r"^password: (\S+)$", out.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert len(password) >= 20
    tokens = await login(client, email, password)
    me = (await client.get("/api/users/me", headers=bearer(tokens))).json()
    assert me["role"] == "admin" and me["email"] == email
    # admins need 2FA for the admin API; with it, the account is a working admin
    await set_account(runtime, me["id"], totp_enabled_at=runtime.clock.now())
    assert (await client.get("/api/admin/users", headers=bearer(tokens))).status_code == 200
    async with runtime.db.session() as session:
        from sqlalchemy import select

        audit = list(await session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "admin.action")))
    assert [e.details for e in audit] == [{"action": "created", "via": "cli", "role": "admin"}]


async def test_create_user_with_password_from_stdin_and_errors(client, database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    email = unique_email("cli")
    out = await _cli(["create-user", "--email", email, "--password-stdin"], database_url, tmp_path,
                     stdin="a long chosen passphrase\n")
    assert out.returncode == 0, out.stderr
    assert "password:" not in out.stdout  # a chosen password is never echoed
    tokens = await login(client, email, "a long chosen passphrase")
    assert (await client.get("/api/users/me", headers=bearer(tokens))).json()["role"] == "user"
    taken = await _cli(["create-user", "--email", email, "--password", "another long passphrase"], database_url,
                       tmp_path)
    assert taken.returncode == 1 and "email_taken" in taken.stderr
    weak = await _cli(["create-user", "--email", unique_email(), "--password", "password"], database_url, tmp_path)
    assert weak.returncode == 1 and "common_password" in weak.stderr
    both = await _cli(["create-user", "--email", unique_email(), "--password", "x" * 12, "--password-stdin"],
                      database_url, tmp_path)
    assert both.returncode == 2  # argparse: the options exclude each other
