"""Runtime configuration overrides: settings an administrator changed without a restart.

The environment stays the source of every other value; an override is kept here so that each
replica — including one started after the change — applies the same values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base


class ConfigOverride(Base):
    __tablename__ = "ops_config_override"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # the Settings field, e.g. log_level
    value: Mapped[Any] = mapped_column(JSON)  # the JSON form; validated again by every replica applying it
    updated_by: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime]
