"""Bodies of the security event log endpoint."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from tradepilot.core.schemas import Schema


class SecurityEventInfo(Schema):
    id: uuid.UUID
    user_id: uuid.UUID | None
    kind: str
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    created_at: datetime
