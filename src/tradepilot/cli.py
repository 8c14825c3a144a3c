"""The ``tradepilot`` command: serve, migrate, config check, demo user, worker."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from tradepilot.config import ConfigError, load_settings

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {}


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):  # type: ignore[no-untyped-def]
    def register(func: Command) -> Command:
        COMMANDS[name] = (help_text, func, arguments)
        return func

    return register


@command("config", "configuration tools", lambda p: p.add_argument("action", choices=["check"]))
def _config(args: argparse.Namespace) -> int:
    settings = load_settings()
    print(json.dumps(settings.masked(), indent=2, default=str))
    print("configuration OK", file=sys.stderr)
    return 0


@command("migrate", "apply database migrations")
def _migrate(args: argparse.Namespace) -> int:
    from tradepilot.core import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url)
    print("database is at the latest migration", file=sys.stderr)
    return 0


@command("serve", "run the HTTP API", lambda p: p.add_argument("--reload", action="store_true"))
def _serve(args: argparse.Namespace) -> int:
    from tradepilot.app import create_app
    from tradepilot.core.logging import configure_logging
    from tradepilot.ops.monitoring.restart import serve

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, settings.log_file)
    app = create_app(settings)
    return serve(app, settings)  # RESTART_EXIT_CODE (75) after POST /api/system/restart


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--email", default=None, help="defaults to TRADEPILOT_DEMO_EMAIL")


@command("demo-user", "create (or reset) the demo user and print its password", _demo_args)
def _demo_user(args: argparse.Namespace) -> int:
    from tradepilot.identity.demo import ensure_demo_user

    settings = load_settings()
    email, password = asyncio.run(ensure_demo_user(settings, args.email or settings.demo_email))
    print("=" * 60)
    print(f"  Demo user:     {email}")
    print(f"  Demo password: {password}")
    print("=" * 60)
    return 0


@command("keys", "encryption keys: `generate` prints a new key; `rotate` re-encrypts stored secrets with the "
                 "first of TRADEPILOT_ENCRYPTION_KEYS", lambda p: p.add_argument("action", choices=["generate", "rotate"]))
def _keys(args: argparse.Namespace) -> int:
    from tradepilot.core.secrets_box import RotationReport, SecretBox, generate_key, rotate_all

    if args.action == "generate":
        print(generate_key())
        return 0
    from sqlalchemy.exc import SQLAlchemyError

    import tradepilot.models_registry  # noqa: F401  (every domain registers its encrypted columns)
    from tradepilot.core.db import create_engine

    settings = load_settings()

    async def rotate() -> list[RotationReport]:
        engine = create_engine(settings.database_url)
        try:
            return await rotate_all(engine, SecretBox.from_settings(settings))
        finally:
            await engine.dispose()

    try:
        reports = asyncio.run(rotate())
    except SQLAlchemyError as exc:
        print(f"could not rotate: {str(exc).splitlines()[0]} (is the database migrated?)", file=sys.stderr)
        return 2
    for report in reports:
        print(f"{report.column}: {report.rotated} re-encrypted, {report.current} already current, "
              f"{len(report.unreadable)} unreadable")
    unreadable = sum(len(r.unreadable) for r in reports)
    if unreadable:
        print(f"{unreadable} values could not be decrypted with any configured key; keep the old keys "
              "configured until they are fixed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["healthcheck"]:  # the container probe: no app imports
        from tradepilot.ops.healthcheck import run as healthcheck

        return healthcheck((sys.argv[1:] if argv is None else argv)[1:])
    _load_plugin_commands()
    parser = argparse.ArgumentParser(prog="tradepilot")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if arguments:
            arguments(p)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2


def _load_plugin_commands() -> None:
    """Domains register their own commands (``tradepilot worker`` lives in jobs)."""
    import tradepilot.jobs.cli  # noqa: F401
    import tradepilot.market.cli_import  # noqa: F401  (also registers `data` and its actions)
    import tradepilot.identity.cli_admin  # noqa: F401
    import tradepilot.ops.backup.cli  # noqa: F401
    import tradepilot.strategies.cli  # noqa: F401  (`backtest`)
    import tradepilot.ai.cli  # noqa: F401  (`ai`)
    import tradepilot.strategies.optimize.cli  # noqa: F401  (`optimize`)
    import tradepilot.ops.healthcheck  # noqa: F401  (`healthcheck`, listed in --help)
