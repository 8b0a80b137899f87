"""Scheduling policy for API calls: a rate cap and a shared pause after a 429 (§6).

Pure policy with the clock and sleep injected; the API client consults both before each
request, so every worker is held back, not only the one that was throttled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """At most `rate` acquisitions per second, spaced evenly, served in arrival order."""

    def __init__(self, rate: float, clock: Clock, sleep: Sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self) -> None:
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)


class ThrottleGate:
    """Closed until a moment the server named; everyone waits at it."""

    def __init__(self, clock: Clock, sleep: Sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self._clock() + seconds)

    async def wait(self) -> None:
        while (left := self.paused_until - self._clock()) > 0:
            await self._sleep(left)
