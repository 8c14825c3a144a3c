"""Notification jobs wait out maintenance mode (a restore swapping the database).

The delivery and digest jobs run on whichever process works jobs; the maintenance switch stops
the long-running writers of its own process, but a job already queued would still write its
attempt log and send. So each of these jobs looks at the shared flag first and, while it is on,
asks to run again later without spending an attempt: nothing failed, and the message goes out
once the platform is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradepilot.jobs.registry import RetryLater
from tradepilot.ops.backup.maintenance import RETRY_AFTER_SECONDS, get_maintenance

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


async def wait_out_maintenance(runtime: Runtime) -> None:
    """Raise :class:`RetryLater` (not counted) while maintenance mode is on."""
    state = await get_maintenance(runtime).current()
    if state is not None:
        raise RetryLater(RETRY_AFTER_SECONDS, f"maintenance ({state.reason}): delivery waits", counts=False)
