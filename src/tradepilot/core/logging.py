"""Structured JSON logs carrying the request id and user id, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from tradepilot.core.context import request_id_var, user_id_var

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key|cookie|otp|hash)", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)
_API_KEY = re.compile(r"\btp_[A-Za-z0-9_-]{8,}")
REDACTED = "[redacted]"
FILE_MAX_BYTES = 50 * 1024 * 1024
FILE_BACKUPS = 5
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({})))


def redact(value: Any, key: str = "") -> Any:
    """Mask values under secret-looking keys and token-shaped substrings anywhere."""
    if key and _SECRET_KEYS.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _API_KEY.sub(REDACTED, _BEARER.sub(r"\1" + REDACTED, value))
    return value


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.user_id = user_id_var.get()
        for attr in set(vars(record)) - _STANDARD_ATTRS:
            setattr(record, attr, redact(getattr(record, attr), attr))
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
    )


def configure_logging(level: str = "INFO", json_output: bool = True, file: Path | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if json_output:
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if file is not None:  # always JSON lines: GET /api/system/logs searches them (ops/monitoring/logbook.py)
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = RotatingFileHandler(file, maxBytes=FILE_MAX_BYTES, backupCount=FILE_BACKUPS, encoding="utf-8")
        to_file.addFilter(ContextFilter())
        to_file.setFormatter(_json_formatter())
        handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
