"""Which strategies exist: the built-ins, the rule language, and operators' plugins.

Plugins are Python strategies an *operator* installs as a package declaring an entry point
in the group ``tradepilot.strategies`` (``name = "package.module:StrategyClass"``); users never
upload code. A plugin that fails to load is logged and left out, never fatal.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from tradepilot.strategies.base import EventStrategy, SignalStrategy, Strategy
from tradepilot.strategies.builtins import BUILTINS
from tradepilot.strategies.rules import RuleStrategy

ENTRY_POINT_GROUP = "tradepilot.strategies"
log = logging.getLogger(__name__)


class UnknownStrategy(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown strategy {self.name!r}; one of {', '.join(self.known)}"


def _plugins() -> list[type[Strategy]]:
    found: list[type[Strategy]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception:  # a broken plugin must not take the platform down
            log.exception("strategy plugin %s could not be loaded", ep.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, (SignalStrategy, EventStrategy)) and getattr(cls, "name", "")):
            log.error("strategy plugin %s is not a named SignalStrategy or EventStrategy subclass", ep.value)
            continue
        found.append(cls)
    return found


@lru_cache(maxsize=1)
def strategies() -> dict[str, type[Strategy]]:
    """Every available strategy by name: built-ins and rules first; a plugin cannot shadow them."""
    table: dict[str, type[Strategy]] = {cls.name: cls for cls in (*BUILTINS, RuleStrategy)}
    for cls in _plugins():
        if cls.name in table:
            log.error("strategy plugin %s.%s reuses the name %r; ignored", cls.__module__, cls.__qualname__, cls.name)
            continue
        table[cls.name] = cls
    return table


def get_strategy(name: str) -> type[Strategy]:
    table = strategies()
    try:
        return table[name]
    except KeyError:
        raise UnknownStrategy(name, sorted(table)) from None


def build_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """The strategy ``name`` with validated ``params`` (``StrategyParamsError`` if they are not)."""
    return get_strategy(name)(params or {})


def catalog() -> list[dict[str, Any]]:
    """What ``GET /api/strategies/catalog`` lists: name, title, kind, source and parameter schema."""
    builtin_names = {cls.name for cls in (*BUILTINS, RuleStrategy)}
    return [{"name": cls.name, "title": cls.title, "description": cls.description, "kind": cls.kind,
             "source": "builtin" if cls.name in builtin_names else "plugin", "params_schema": cls.params_schema()}
            for cls in strategies().values()]
