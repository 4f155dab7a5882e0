"""Background tasks of the service: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel(task: asyncio.Task[object] | None) -> None:
    """Cancel `task` and wait until it has finished its clean-up; nothing if it is None or done."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
