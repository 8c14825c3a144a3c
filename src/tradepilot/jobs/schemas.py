"""What the API shows of a job. The payload is not shown: it may carry secrets (reset links)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from tradepilot.core.schemas import Schema


class JobOut(Schema):
    id: uuid.UUID
    kind: str
    status: str
    progress: float
    progress_message: str | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    run_after: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
