"""Background tasks of the service: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("edge.tasks")


async def cancel(task: asyncio.Task[object] | None) -> None:
    """Cancel `task` and wait until it has finished its clean-up; nothing if it is None.

    A task that had already failed is logged, not re-raised: stopping it must not stop the caller
    (a loop removing idle feeds, a shutdown)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception:
            log.exception("background task %s had failed", task.get_name())
