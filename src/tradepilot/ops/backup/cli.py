"""``tradepilot backup create|list|verify|restore|config|maintenance``.

``restore`` works with the server running or stopped: it puts every process that shares the
Redis instance (or, without Redis, the data directory) into maintenance mode for the swap,
exactly like ``POST /api/system/restore``. Exit codes: 0 done, 1 refused (corrupted,
incompatible, undecryptable, verification failed), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tradepilot.cli import command
from tradepilot.config import load_settings
from tradepilot.core.errors import TradePilotError

ACTIONS = ("create", "list", "verify", "restore", "config", "maintenance")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("target", nargs="?", help="a backup id (verify, restore), or on|off (maintenance)")
    parser.add_argument("--yes", action="store_true", help="restore without asking")


@command("backup", "backups: create, list, verify <id>, restore <id>, config (settings without secrets), "
                   "maintenance on|off", _arguments)
def _backup(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "config":
        from tradepilot.ops.backup.config_backup import config_json

        print(config_json(settings).decode())
        return 0
    if args.action in ("verify", "restore", "maintenance") and not args.target:
        print(f"`backup {args.action}` needs {'on or off' if args.action == 'maintenance' else 'a backup id'}",
              file=sys.stderr)
        return 2
    if args.action == "restore" and not args.yes:
        answer = input(f"Replace ALL data with backup {args.target}? Type 'restore' to go on: ")
        if answer.strip() != "restore":
            print("not restored", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_run(settings, args))
    except TradePilotError as exc:
        print(f"{exc.code}: {exc.detail}", file=sys.stderr)
        return 1


async def _run(settings, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from tradepilot.ops.backup.maintenance import get_maintenance
    from tradepilot.ops.backup.restore_runner import maintenance_window
    from tradepilot.ops.backup.setup import backup_service
    from tradepilot.runtime import build_runtime

    runtime = build_runtime(settings)
    try:
        service = backup_service(runtime)
        if args.action == "create":
            record = await service.create(reason="cli")
            if settings.backup_verify_after_create:
                record = await service.verify(record.id)
            print(json.dumps(_summary(record), indent=2))
            deleted = service.apply_retention()
            if deleted:
                print(f"retention deleted: {', '.join(deleted)}", file=sys.stderr)
        elif args.action == "list":
            for record in service.store.list():
                verified = {True: "verified", False: "FAILED", None: "unverified"}[record.verified]
                print(f"{record.id}  {record.created_at.isoformat()}  {record.size:>12} bytes  "
                      f"{record.dialect}  rev {record.alembic_revision}  {verified}")
        elif args.action == "verify":
            record = await service.verify(args.target)
            print(f"{record.id}: verified ({record.tables} tables, {record.rows} rows match the manifest)")
        elif args.action == "restore":
            report = await service.restore(args.target,
                                           around_swap=lambda: maintenance_window(runtime, "restoring a backup"))
            print(f"restored {report.backup_id}: {report.tables} tables, {report.rows} rows; schema at "
                  f"{report.head_revision}")
            if settings.live_reconcile_enabled:
                print("live accounts: orders refused (503 reconciliation_pending) until each one's first "
                      "reconciliation by a running server", file=sys.stderr)
        elif args.action == "maintenance":
            maintenance = get_maintenance(runtime)
            if args.target == "on":
                await maintenance.enter("set by an operator")
            elif args.target == "off":
                await maintenance.leave()
            else:
                print("maintenance takes on or off", file=sys.stderr)
                return 2
            print(f"maintenance {args.target}")
        return 0
    finally:
        if runtime.redis is not None:
            await runtime.redis.aclose()
        await runtime.db.dispose()


def _summary(record) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"id": record.id, "created_at": record.created_at.isoformat(), "size": record.size,
            "sha256": record.sha256, "verified": record.verified, "tables": record.tables, "rows": record.rows}
