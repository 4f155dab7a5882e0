"""Players first (issue 15): the CPU-heavy steps of feed rounds (starting a round's fetches,
deciding, rendering) pass a shared gate that lets at most `batch` of them run per event-loop turn, in
the order they arrived. When many rounds come due together, the rest wait for the next turns, and
between two turns the loop reads the sockets and answers the players waiting: a player waits for at
most one batch of round steps, not for every due round.

`Turns` is the pure rule (first come, first served, at most `batch` per turn, each admitted once);
`Gate` is its thin asyncio shell: a turn ends when the loop has run everything ready (call_soon).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
BATCH = 16  # round steps per loop turn: each is well under a millisecond at usual window lengths


class Turns(Generic[K]):
    """Who may run now: at most `batch` per turn, first come, first served."""

    def __init__(self, batch: int = BATCH) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.batch = batch
        self.waiting: deque[K] = deque()
        self.used = 0  # admitted this turn

    def arrive(self, key: K) -> bool:
        """True: `key` runs now; False: it waits, and `next_turn` will admit it in order."""
        if self.used < self.batch and not self.waiting:
            self.used += 1
            return True
        self.waiting.append(key)
        return False

    def next_turn(self) -> list[K]:
        """A new turn: those admitted in it, oldest first (up to `batch`)."""
        admitted = [self.waiting.popleft() for _ in range(min(self.batch, len(self.waiting)))]
        self.used = len(admitted)
        return admitted

    def leave(self, key: K) -> None:
        """`key` no longer waits (its round was cancelled)."""
        try:
            self.waiting.remove(key)
        except ValueError:
            pass

    @property
    def busy(self) -> bool:
        """Anything admitted this turn or waiting: the turn must be ended."""
        return self.used > 0 or bool(self.waiting)


class Gate:
    """The asyncio shell of `Turns`: `await gate.turn()` before a CPU-heavy round step."""

    def __init__(self, batch: int = BATCH) -> None:
        self._turns: Turns[asyncio.Future[None]] = Turns(batch)
        self._ending = False

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        admitted = self._turns.arrive(waiter)
        self._end_turn_soon(loop)
        if admitted:
            return
        try:
            await waiter
        except asyncio.CancelledError:
            self._turns.leave(waiter)
            raise

    def _end_turn_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._ending:
            self._ending = True
            loop.call_soon(self._next_turn, loop)

    def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ending = False
        for waiter in self._turns.next_turn():
            if not waiter.done():
                waiter.set_result(None)
        if self._turns.busy:
            self._end_turn_soon(loop)
