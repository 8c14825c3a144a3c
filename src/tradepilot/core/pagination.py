"""Keyset pagination by (timestamp, id): the page query every time-ordered list shares.

Rows are ordered by a timestamp column with the id breaking ties; the cursor is the last
row's pair (``core.cursors.time_cursor``). Unlike OFFSET, a page never skips or repeats a row
when rows are added meanwhile, and the range condition lets an index on the timestamp serve it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.core.cursors import decode_time_cursor, time_cursor

T = TypeVar("T")


async def time_keyset_page(session: AsyncSession, query: Select[tuple[T]], time_column: Any, id_column: Any, *,
                           limit: int, cursor: str | None, newest_first: bool = True) -> tuple[list[T], str | None]:
    """One page of ``query`` ordered by (``time_column``, ``id_column``) and the next page's cursor."""
    if cursor is not None:
        at, row_id = decode_time_cursor(cursor)
        if newest_first:
            query = query.where(time_column <= at, or_(time_column < at, and_(time_column == at, id_column < row_id)))
        else:
            query = query.where(time_column >= at, or_(time_column > at, and_(time_column == at, id_column > row_id)))
    order = (time_column.desc(), id_column.desc()) if newest_first else (time_column, id_column)
    rows = list(await session.scalars(query.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    stamp: datetime = getattr(last, time_column.key)
    return rows, time_cursor(stamp, getattr(last, id_column.key))
