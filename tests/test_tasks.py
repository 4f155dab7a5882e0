"""Stopping background tasks."""

from __future__ import annotations

import asyncio

from edge.tasks import cancel


async def test_cancel_stops_a_running_task_and_tolerates_one_that_failed() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def broken() -> None:
        raise RuntimeError("failed long ago")

    running = asyncio.create_task(forever())
    await started.wait()
    failed = asyncio.create_task(broken())
    await asyncio.sleep(0)
    await cancel(running)
    await cancel(failed)  # logged, not raised
    await cancel(None)
    assert running.cancelled() and failed.done()
