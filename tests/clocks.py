"""A clock for tests: time that moves only when the code under test sleeps, so a minute of
backoff or outage takes no minute; events fire when their moment comes."""

from __future__ import annotations

import asyncio
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
