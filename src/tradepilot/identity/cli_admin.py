"""``tradepilot admin create-user --email X [--admin] [--password P | --password-stdin]``.

Creates an account directly in the database (the server need not run). Without a password
option a strong one is generated and printed once. The verification mail is recorded as a
job and sent by the server (or a worker) that shares the database. An admin still has to
turn on two-factor authentication before the admin endpoints answer them.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from dataclasses import dataclass

from tradepilot.cli import command
from tradepilot.config import Settings, load_settings
from tradepilot.core.errors import TradePilotError
from tradepilot.identity.security_events import SecurityEventKind, record_security_event


@dataclass(frozen=True)
class CreatedUser:
    id: str
    email: str
    role: str
    password: str
    generated: bool


def _admin_args(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="admin_action", required=True)
    create = actions.add_parser("create-user", help="create an account (an administrator with --admin)")
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true", help="give the account the admin role")
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--password", help="the password (visible to other local users in the process list; "
                                           "prefer --password-stdin or a generated one)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


@command("admin", "administration: `admin create-user --email X [--admin]`", _admin_args)
def _admin(args: argparse.Namespace) -> int:
    if args.admin_action != "create-user":  # argparse allows only known actions; kept for new ones
        return 2
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
    try:
        created = asyncio.run(create_user(load_settings(), email=args.email, password=password, admin=args.admin))
    except TradePilotError as exc:
        print(f"error: {exc.detail} ({exc.code})", file=sys.stderr)
        return 1
    print(f"created {created.role} {created.email} (id {created.id})")
    if created.generated:
        print(f"password: {created.password}")
        print("The password is shown once; store it now.", file=sys.stderr)
    if created.role == "admin":
        print("Before using the admin API, log in and turn on two-factor authentication.", file=sys.stderr)
    return 0


async def create_user(settings: Settings, *, email: str, password: str | None, admin: bool) -> CreatedUser:
    """Register through the identity service (same policy, hooks and audit as the API)."""
    from tradepilot.identity.setup import start_identity
    from tradepilot.jobs.setup import start_jobs, stop_jobs
    from tradepilot.runtime import build_runtime

    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(18)
    # no Redis and no execution: mail jobs are only recorded, for the server or a worker to send
    runtime = build_runtime(settings.model_copy(update={"redis_url": None}))
    await runtime.bus.start()
    try:
        await start_identity(runtime)
        await start_jobs(runtime, execute=False, schedules=[])
        identity = runtime.services["identity"]
        role = "admin" if admin else "user"
        async with runtime.db.session() as session:
            user = await identity.register(session, email=email, password=password, role=role)
            record_security_event(session, clock=runtime.clock, kind=SecurityEventKind.ADMIN_ACTION, user_id=user.id,
                                  details={"action": "created", "via": "cli", "role": role})
            await session.commit()
        return CreatedUser(id=str(user.id), email=user.email, role=role, password=password, generated=generated)
    finally:
        await stop_jobs(runtime)
        await runtime.bus.stop()
        await runtime.db.dispose()
