"""The group rules in action (what they are: see :mod:`groups`).

Called by the core after a grouped order fills, triggers or closes. Closes made here pass
``cascade=False``: one rule application never sets off another.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tradepilot.trading.engine.events import EngineEvent, OrderUpdated
from tradepilot.trading.engine.groups import OrderGroup
from tradepilot.trading.engine.orders import LegRole, Order, OrderStatus

if TYPE_CHECKING:
    from tradepilot.trading.engine.core import Core

_CANCELED = OrderStatus.CANCELED


def _group(core: Core, order: Order) -> OrderGroup | None:
    return core.groups.get(order.group_id) if order.group_id else None


def _open(core: Core, order_id: str | None) -> Order | None:
    order = core.orders.get(order_id) if order_id else None
    return order if order is not None and order.is_open else None


def _exit_activity(core: Core, group: OrderGroup, order: Order, reason: str, ts: datetime,
                   out: list[EngineEvent]) -> None:
    for leg_id in group.exit_ids:
        leg = _open(core, leg_id)
        if leg is not None and leg is not order:
            core.close(leg, _CANCELED, reason, ts, out, cascade=False)
    entry = _open(core, group.entry_id)
    if entry is not None:
        core.close(entry, _CANCELED, "bracket_exited", ts, out, cascade=False)


def _drop_if_done(core: Core, group: OrderGroup) -> None:
    if not any(_open(core, order_id) for order_id in group.order_ids):
        core.groups.pop(group.id, None)


def on_fill(core: Core, order: Order, ts: datetime, out: list[EngineEvent]) -> None:
    group = _group(core, order)
    if group is None:
        return
    if order.role == LegRole.ENTRY:
        _size_exits(core, group, order, ts, out)
    elif order.fill_count == 1:  # the first fill of an exit
        _exit_activity(core, group, order, "oco_sibling_filled", ts, out)
    _drop_if_done(core, group)


def on_trigger(core: Core, order: Order, ts: datetime, out: list[EngineEvent]) -> None:
    group = _group(core, order)
    if group is not None and order.role != LegRole.ENTRY:
        _exit_activity(core, group, order, "oco_sibling_triggered", ts, out)


def on_close(core: Core, order: Order, ts: datetime, out: list[EngineEvent], *,
             cascade: bool) -> None:
    group = _group(core, order)
    if group is None:
        return
    if cascade:
        if order.role == LegRole.ENTRY:
            if not order.filled_quantity:
                for leg_id in group.exit_ids:
                    leg = _open(core, leg_id)
                    if leg is not None:
                        core.close(leg, _CANCELED, "bracket_entry_canceled", ts, out, cascade=False)
        elif not order.triggered:  # an exit or OCO leg canceled / expired: the whole group goes
            for order_id in group.order_ids:
                other = _open(core, order_id)
                if other is not None:
                    core.close(other, _CANCELED, "group_canceled", ts, out, cascade=False)
    _drop_if_done(core, group)


def _size_exits(core: Core, group: OrderGroup, entry: Order, ts: datetime,
                out: list[EngineEvent]) -> None:
    """Every entry fill sizes the open exits to the entry's filled quantity; the first one
    activates them."""
    for leg_id in group.exit_ids:
        leg = _open(core, leg_id)
        if leg is None:
            continue
        leg.quantity = entry.filled_quantity
        previous = leg.status
        if previous == OrderStatus.PENDING_NEW:
            leg.status = OrderStatus.NEW
            leg.seq = core.next_seq()
        out.append(OrderUpdated(leg.id, leg.account_id, leg.status, previous, leg.filled_quantity,
                                leg.remaining_quantity, leg.filled_notional, leg.fees, ts))
        if previous == OrderStatus.PENDING_NEW:
            core.work(leg, ts, out)
