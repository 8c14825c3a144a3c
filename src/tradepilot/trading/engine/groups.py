"""Order groups: brackets (entry + exits) and OCO pairs, and the rules that tie their orders.

An OCO is a bracket without an entry: its legs work from the start. The rules:

* **Exit activity** — the first fill or trigger of an exit (OCO leg) cancels the other open
  exits (``oco_sibling_filled`` / ``oco_sibling_triggered``) and the entry's unfilled rest
  (``bracket_exited``: once the position is being closed, adding to it makes no sense).
* **Entry fills** — every entry fill sizes each open exit to the entry's filled quantity; the
  first one activates exits that were ``pending_new``. Growing an exit is the engine's doing,
  not the user's, so it keeps its time priority.
* **Cancel / expiry by the user or the clock** — of an entry that never filled: its exits are
  canceled (``bracket_entry_canceled``); of an entry with fills: the exits stay, protecting the
  position. Of an exit or an OCO leg: the whole group is canceled (``group_canceled``), as
  exchanges do for order lists.

A group's state is entirely in its orders' states, so persisting the orders persists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class GroupKind(StrEnum):
    OCO = "oco"
    BRACKET = "bracket"


@dataclass(frozen=True, slots=True)
class OrderGroup:
    id: str
    kind: GroupKind
    entry_id: str | None  # None for an OCO
    exit_ids: tuple[str, ...]  # take-profit first, then stop-loss; the two legs of an OCO

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", GroupKind(self.kind))
        object.__setattr__(self, "exit_ids", tuple(self.exit_ids))

    @property
    def order_ids(self) -> tuple[str, ...]:
        return ((self.entry_id,) if self.entry_id else ()) + self.exit_ids
