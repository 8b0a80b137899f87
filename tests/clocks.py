"""A clock for tests: time that moves only when the code under test sleeps, so a minute of
backoff or outage takes no minute; events fire when their moment comes."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable


class SteppedClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []  # every sleep asked for, in order
        self._events: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def at(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` once the clock has moved `delay` seconds past now."""
        self._events.append((self.now + delay, action))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        due = [event for event in self._events if event[0] <= self.now]
        self._events = [event for event in self._events if event[0] > self.now]
        for _, action in due:
            action()
        await asyncio.sleep(0)


class VirtualClock:
    """Time for several tasks that sleep at once (SteppedClock adds every sleep to one sum):
    each sleeper wakes at its own moment; `run` (a task the test starts) moves the clock to
    the next wake-up every millisecond of real time, so work on a real socket still gets to
    go on between two moments."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), self._count, future))
        await future

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            if self._sleepers:
                wake, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                if not future.done():
                    future.set_result(None)
