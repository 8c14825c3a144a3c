"""Tables of the login guard: failed-login counters, lockouts, known client IPs."""

from __future__ import annotations
