"""A child process for the kill tests of the outbox and the leases (not a test module).

Run as ``python -m tests.integration.outbox_lease_child COMMAND ...``:

emit DATABASE_URL USER_ID
    commits one outbox event (no relay running), prints its id, then SIGKILLs itself.

lease DATABASE_URL NAME BACKEND TTL [REDIS_URL PREFIX]
    competes for lease NAME with ``run_while_held`` and prints one JSON line per fact:
    {"event": "ready"}, {"event": "busy"} for each failed attempt, {"event": "held", ...}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable

from tradepilot.config import Settings
from tradepilot.core.db import Database
from tradepilot.core.outbox import emit
from tradepilot.runtime import build_runtime


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def emit_and_die(url: str, user_id: str) -> None:
    db = Database(url)
    async with db.transaction() as session:
        event = await emit(
            session,
            topic=f"user.{user_id}.test",
            type="test.survived_kill",
            payload={"n": 1},
            user_id=user_id,
        )
    say(event="emitted", id=event.id, seq=event.seq)
    os.kill(os.getpid(), signal.SIGKILL)  # no relay, no clean shutdown


class _BusyReporter(logging.Handler):
    """Turns the manager's "lease busy; retrying" debug records into stdout lines."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "lease busy; retrying":
            say(event="busy")


async def hold_lease(
    url: str, name: str, backend: str, ttl: float, redis_url: str | None, prefix: str | None
) -> None:
    from tradepilot.core.lease import Lease, lease_manager

    settings = Settings(
        _env_file=None,
        env="test",
        database_url=url,
        redis_url=redis_url,  # type: ignore[call-arg]
        redis_prefix=prefix or "tptest:child:",
        lease_ttl_seconds=ttl,
        log_json=False,
    )
    runtime = build_runtime(settings)
    lease_log = logging.getLogger("tradepilot.lease")
    lease_log.setLevel(logging.DEBUG)
    lease_log.addHandler(_BusyReporter())
    manager = lease_manager(runtime, None if backend == "auto" else backend)
    say(event="ready", holder=manager.holder, pid=os.getpid())

    async def work(lease: Lease) -> None:
        say(event="held", token=lease.token, holder=lease.holder)
        await asyncio.Event().wait()

    await manager.run_while_held(name, work, retry_every=0.05)


def main(argv: list[str]) -> None:
    command, url, *rest = argv
    if command == "emit":
        asyncio.run(emit_and_die(url, rest[0]))
    elif command == "lease":
        name, backend, ttl, *redis = rest
        asyncio.run(hold_lease(url, name, backend, float(ttl), *(redis or [None, None])))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])


# --- the parent's side (used by the tests) ----------------------------------------------------


class Child:
    """A running child: its JSON lines are collected as they arrive."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.messages: list[dict[str, object]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, *args: str) -> Child:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.outbox_lease_child",
            *args,
            cwd=root,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.messages.append(json.loads(line))

    def count(self, event: str) -> int:
        return sum(1 for m in self.messages if m.get("event") == event)

    def last(self, event: str) -> dict[str, object]:
        return [m for m in self.messages if m.get("event") == event][-1]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"child never reached the expected state; saw {self.messages}")
            if self.proc.returncode is not None and self._reader.done():
                raise AssertionError(f"child exited {self.proc.returncode}; saw {self.messages}")
            await asyncio.sleep(0.01)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
