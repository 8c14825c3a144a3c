"""`tradepilot keys rotate`: old ciphertexts keep working until rotated, then only the new key is needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import select

from tests import support
from tests.helpers import PASSWORD, new_user, unique_email
from tests.integration.test_twofactor import code_at, enrol, try_login
from tradepilot.app import create_app
from tradepilot.core.clock import TestClock
from tradepilot.core.secrets_box import SecretBox, generate_key, rotate_column
from tradepilot.identity.models import User
from tradepilot.runtime import Runtime


@contextlib.asynccontextmanager
async def serving(database_url: str, tmp_path: Path, clock: TestClock, keys: str) -> AsyncIterator[tuple]:
    app = create_app(support.make_settings(database_url, data_dir=tmp_path / "var", encryption_keys=keys),
                     clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app.state.runtime


def rotate_cli(database_url: str, keys: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPILOT_")}
    env.update({"TRADEPILOT_DATABASE_URL": database_url, "TRADEPILOT_ENCRYPTION_KEYS": keys})
    return subprocess.run([sys.executable, "-m", "tradepilot", "keys", "rotate"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


async def stored_secret(runtime: Runtime, email: str) -> str | None:
    async with runtime.db.session() as session:
        return await session.scalar(select(User.totp_secret_encrypted).where(User.email == email))


async def test_rotation_moves_secrets_to_the_new_primary_key(database_url, tmp_path, clock) -> None:  # type: ignore[no-untyped-def]
    old, new, stranger = generate_key(), generate_key(), generate_key()
    async with serving(database_url, tmp_path, clock, old) as (client, runtime):
        profile, tokens = await new_user(client)
        secret, _ = await enrol(client, tokens, clock)
        before = await stored_secret(runtime, profile["email"])
    assert before is not None and Fernet(old.encode()).decrypt(before.encode()).decode() == secret

    # the new key rolled out first as primary, the old one still listed: old ciphertext still works
    async with serving(database_url, tmp_path, clock, f"{new},{old}") as (client, runtime):
        assert (await try_login(client, profile["email"], otp=code_at(secret, clock))).status_code == 200
        assert await stored_secret(runtime, profile["email"]) == before

    done = await asyncio.to_thread(rotate_cli, database_url, f"{new},{old}", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "user_account.totp_secret_encrypted: 1 re-encrypted, 0 already current, 0 unreadable" in done.stdout
    assert secret not in done.stdout + done.stderr

    clock.advance(30)
    async with serving(database_url, tmp_path, clock, new) as (client, runtime):
        after = await stored_secret(runtime, profile["email"])
        assert after is not None and after != before and Fernet(new.encode()).decrypt(after.encode()).decode() == secret
        assert (await try_login(client, profile["email"], otp=code_at(secret, clock))).status_code == 200

    # a value no configured key can read is reported and left alone
    lost = await asyncio.to_thread(rotate_cli, database_url, stranger, tmp_path)
    assert lost.returncode == 1 and "1 unreadable" in lost.stdout and "could not be decrypted" in lost.stderr
    async with serving(database_url, tmp_path, clock, new) as (_, runtime):
        assert await stored_secret(runtime, profile["email"]) == after


async def test_rotation_walks_every_row_in_batches(database_url, tmp_path, clock) -> None:  # type: ignore[no-untyped-def]
    old, new = generate_key(), generate_key()
    async with serving(database_url, tmp_path, clock, old) as (_, runtime):
        plain = {}
        async with runtime.db.session() as session:
            for n in range(7):
                user = await runtime.services["identity"].register(session, email=unique_email(), password=PASSWORD)
                if n != 3:  # one user without a secret: NULL is skipped
                    plain[user.id] = f"SECRET{n}"
                    user.totp_secret_encrypted = SecretBox([old]).encrypt(plain[user.id])
            await session.commit()
        report = await rotate_column(runtime.db.engine, SecretBox([new, old]), User.__table__.c.totp_secret_encrypted,
                                     batch_size=2)
        assert (report.rotated, report.current, report.unreadable) == (6, 0, [])
        again = await rotate_column(runtime.db.engine, SecretBox([new, old]), User.__table__.c.totp_secret_encrypted)
        assert (again.rotated, again.current, again.unreadable) == (0, 6, [])
        async with runtime.db.session() as session:
            rows = (await session.execute(select(User.id, User.totp_secret_encrypted))).all()
        only_new = SecretBox([new])
        assert {uid: only_new.decrypt(value) for uid, value in rows if value is not None} == plain
