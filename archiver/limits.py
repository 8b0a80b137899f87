"""Scheduling policy for API calls: a rate cap and a shared pause after a 429 (§6).

Pure policy with the clock and sleep injected; the API client consults both before each
request, so every worker is held back, not only the one that was throttled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """At most `rate` acquisitions per second, spaced evenly, served in arrival order. The
    rate halves when the server throttles (once a second at most, never below an eighth of the
    ceiling) and grows back by a twentieth
    of the ceiling (at least one request per second) each second, never above the ceiling."""

    def __init__(self, rate: float, clock: Clock, sleep: Sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = self.rate = rate
        self._last_cut = -1e18
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def slow_down(self) -> None:
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self._set(max(self.ceiling / 8, self.rate / 2))

    def speed_up(self) -> None:
        if self.rate < self.ceiling:
            # Each success adds step/rate: about `step` requests per second, each second.
            step = max(1.0, self.ceiling / 20)
            self._set(min(self.ceiling, self.rate + step / self.rate))

    def _set(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate

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


class InFlight:
    """How many calls may be in flight: `ceiling` at most, halved when a server throttles
    (at most once a second, so one burst of 429s counts once; never below a quarter of the
    ceiling), then grown back by one for every `limit` calls that finish (AIMD)."""

    def __init__(self, ceiling: int, clock: Clock) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        # Never below a quarter: throttling of a few calls (a random 429) must not stall a run.
        self._floor = max(1.0, ceiling / 4)
        self._clock = clock
        self._active = 0
        self._last_cut = -1e18
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < int(self.limit))
            self._active += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def throttled(self) -> None:
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self.limit = max(self._floor, self.limit / 2)

    def succeeded(self) -> None:
        grown = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        if int(grown) > int(self.limit):
            self._wake()
        self.limit = grown

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())
