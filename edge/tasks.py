"""Background tasks of the service: stopping one the same way everywhere."""

from __future__ import annotations

import asyncio
import logging

from edge.store.base import StoreUnavailable

log = logging.getLogger("edge.tasks")


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log a background loop's failure the one way: the store being down is an outage the loop rides
    out (a warning naming it, no traceback), anything else is a bug (with its traceback)."""
    if isinstance(exc, StoreUnavailable):
        logger.warning(message + ": %s", *args, exc)
    else:
        logger.exception(message, *args)


CANCEL_GRACE_S = 5.0  # a cancelled task still running after this lost its cancellation


async def cancel(task: asyncio.Task[object] | None, grace_s: float = CANCEL_GRACE_S) -> None:
    """Cancel `task` and wait until it has finished its clean-up; nothing if it is None.

    A task that had already failed is logged, not re-raised: stopping it must not stop the caller
    (a loop removing idle feeds, a shutdown). The caller's own cancellation is not swallowed.

    A library can lose a cancellation (Python 3.11's `asyncio.wait_for` did, inside redis-py: see
    edge.store.redis.RedisDatabase): a task still running `grace_s` after its cancellation is
    cancelled again, with a warning."""
    if task is None:
        return
    task.cancel()
    while True:
        done, _ = await asyncio.wait((task,), timeout=grace_s)
        if done:
            break
        log.warning("background task %s still ran %g s after its cancellation; cancelling it again",
                    task.get_name(), grace_s)
        task.cancel()
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, Exception):
        log_failure(log, exc, "background task %s had failed", task.get_name())
    elif exc is not None:
        raise exc


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds passed; whether it was set.

    Not `asyncio.wait_for`: on Python 3.11 it loses a cancellation that arrives as the event is
    set (the wait returns normally), and a feed cancelled by a shutdown at the moment a poke woke it
    went on looping until it went idle (found by a test: shutdown took 60 s). `asyncio.timeout`
    tells its own cancellation from one sent to the task."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
