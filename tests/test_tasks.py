"""Stopping background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edge.store.base import StoreUnavailable
from edge.tasks import cancel, log_failure


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


async def test_a_task_that_lost_its_cancellation_is_cancelled_again(caplog: pytest.LogCaptureFixture) -> None:
    """A library may swallow a cancellation (Python 3.11's asyncio.wait_for did, in redis-py): the
    task then runs on as if never cancelled, and a shutdown waited on it. Still running after the
    grace, it is cancelled again, and the warning names it."""
    swallowed = 0

    async def careless() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as the library did: the cancellation is gone, the loop goes on

    task = asyncio.create_task(careless(), name="careless")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="edge.tasks"):
        await cancel(task, grace_s=0.01)
    assert task.cancelled() and swallowed == 1
    assert [r.getMessage() for r in caplog.records] == [
        "background task careless still ran 0.01 s after its cancellation; cancelling it again"]


async def test_the_caller_cancelled_while_a_task_cleans_up_is_cancelled_too() -> None:
    """Stopping a task must not swallow the stopper's own cancellation (a shutdown cancelled while
    it waits on a feed's clean-up stops; it does not carry on as if nothing happened)."""
    cleaning, release = asyncio.Event(), asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaning.set()
            await release.wait()

    worker = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel(worker))
    await cleaning.wait()
    stopper.cancel()
    await asyncio.wait({stopper})
    assert stopper.cancelled() and not worker.done()
    release.set()
    await asyncio.wait({worker})
    assert worker.cancelled()


async def test_a_cancellation_arriving_as_the_event_is_set_is_not_lost() -> None:
    """A feed's loop waits for a poke or its next round; a shutdown cancelling it at the moment a
    poke wakes it must stop it (Python 3.11's asyncio.wait_for swallowed that cancellation every
    time, and the loop went on until the feed went idle)."""
    from edge.tasks import wait_for_event

    for _ in range(50):
        event = asyncio.Event()

        async def loop() -> None:
            while True:
                await wait_for_event(event, 60.0)
                event.clear()

        task = asyncio.create_task(loop())
        await asyncio.sleep(0)  # waiting now
        event.set()
        task.cancel()  # the same moment
        done, _ = await asyncio.wait({task}, timeout=1.0)
        assert task in done and task.cancelled()


async def test_waiting_for_an_event_says_whether_it_was_set() -> None:
    from edge.tasks import wait_for_event

    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 0.01) is True


@pytest.mark.parametrize("exc", [StoreUnavailable("redis://127.0.0.1:1/0: refused"), KeyError("a bug")])
def test_a_store_outage_is_logged_as_a_warning_and_a_bug_with_its_traceback(
        exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("edge.test")
    with caplog.at_level(logging.INFO, logger="edge.test"):
        try:
            raise exc
        except Exception as caught:
            log_failure(logger, caught, "loop %s failed", "x")
    [record] = caplog.records
    if isinstance(exc, StoreUnavailable):
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert record.getMessage() == "loop x failed: redis://127.0.0.1:1/0: refused"
    else:
        assert record.levelno == logging.ERROR and record.exc_info is not None
