"""Recent structured log records: a bounded in-memory ring, and the JSON log file when there is one.

Every record is stored as the JSON log line would show it (ts, level, logger, message,
request_id, user_id and the extra fields), after redaction: the context filter masks
secret-looking fields, and the rendered message and traceback are redacted again, because
``%s`` arguments are only rendered here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradepilot.core.logging import ContextFilter, redact

RING_SIZE = 5000
FILE_TAIL_BYTES = 4 * 1024 * 1024  # the newest 4 MiB of the log file are searched
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "user_id",
                                                          "taskName"}


def record_to_dict(record: logging.LogRecord) -> dict[str, Any]:
    """The record as its JSON log line: standard fields, then the (already redacted) extras."""
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname,
        "logger": record.name,
        "message": redact(record.getMessage()),
        "request_id": getattr(record, "request_id", None),
        "user_id": getattr(record, "user_id", None),
    }
    for key in set(vars(record)) - _STANDARD_ATTRS:
        value = getattr(record, key)
        entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else redact(str(value))
    if record.exc_info:
        entry["exc_info"] = redact(logging.Formatter().formatException(record.exc_info))
    return entry


class RingLogHandler(logging.Handler):
    """Keeps the newest ``capacity`` records of this process, redacted, for ``GET /api/system/logs``."""

    def __init__(self, capacity: int = RING_SIZE) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = record_to_dict(record)
        except Exception:  # noqa: BLE001 - a log call must never fail the caller
            self.handleError(record)
            return
        with self._guard:
            self._records.append(entry)

    def records(self) -> list[dict[str, Any]]:
        with self._guard:
            return list(self._records)


@dataclass(frozen=True)
class LogQuery:
    level: str | None = None  # this level and above
    logger: str | None = None  # this logger and its children
    request_id: str | None = None
    user_id: str | None = None
    limit: int = 200

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.level is not None and LEVELS.get(str(entry.get("level")), 0) < LEVELS[self.level]:
            return False
        if self.logger is not None:
            name = str(entry.get("logger", ""))
            if name != self.logger and not name.startswith(self.logger + "."):
                return False
        if self.request_id is not None and entry.get("request_id") != self.request_id:
            return False
        return self.user_id is None or entry.get("user_id") == self.user_id


def search(entries: Iterable[dict[str, Any]], query: LogQuery) -> list[dict[str, Any]]:
    """The newest ``query.limit`` matching entries, newest first."""
    found: list[dict[str, Any]] = []
    for entry in reversed(list(entries)):
        if query.matches(entry):
            found.append(entry)
            if len(found) >= query.limit:
                break
    return found


def file_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of the log file's tail, oldest first (lines that are not JSON are skipped).

    The file was written through the same context filter, so its records are redacted; their
    messages are redacted once more on the way out, like the ring's.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with path.open("rb") as f:
        if size > FILE_TAIL_BYTES:
            f.seek(size - FILE_TAIL_BYTES)
            f.readline()  # a partial line
        for raw in f:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield {k: redact(v, k) if k not in ("request_id", "user_id") else v for k, v in entry.items()}


def attach_ring(handler: RingLogHandler, level: str) -> None:
    """Put the ring on the root logger and let the platform's records of ``level`` reach it."""
    logging.getLogger().addHandler(handler)
    platform = logging.getLogger("tradepilot")
    if platform.getEffectiveLevel() > LEVELS[level]:
        platform.setLevel(level)


def detach_ring(handler: RingLogHandler) -> None:
    logging.getLogger().removeHandler(handler)
