"""Tables of two-factor authentication: recovery codes, emailed one-time codes."""

from __future__ import annotations
