"""Marks the FastAPI dependencies that load a resource *and* check it belongs to the caller.

Every route that takes an object id must depend on one of them (or be on the explicit
allow-list in the ownership-inventory test). They answer 404 for a missing object and for
another user's object alike, so ids reveal nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

OWNERSHIP_DEPENDENCIES: set[Callable[..., object]] = set()


def ownership_dependency(func: F) -> F:
    OWNERSHIP_DEPENDENCIES.add(func)
    return func
