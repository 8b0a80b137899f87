"""Scheduling policy for API calls: a rate cap and a shared pause after a 429 (§6).

Pure policy with the clock and sleep injected; the API client consults both before each
request, so every worker is held back, not only the one that was throttled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


DECREASE = 0.7  # after a throttle, the API rate drops to this fraction of the rate that drew it


class RateLimiter:
    """At most `rate` acquisitions per second, spaced evenly, served in arrival order.

    When the server throttles, the rate drops to DECREASE of what drew the throttle (once a
    second at most, never below an eighth of the ceiling), then climbs back in CUBIC's shape:
    quickly while far below the rate that was throttled (a quarter of the gap each second),
    slowly near it, and past it faster and faster (the excess doubling each second) up to the
    ceiling. So the rate settles just under a server's limit, where halving and a linear climb
    would saw between half the limit and above it; and a one-off 429 costs only a few seconds."""

    def __init__(self, rate: float, clock: Clock, sleep: Sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.ceiling = self.rate = rate
        self._throttled_at = 0.0  # the rate that drew the last throttle
        self._last_cut = -1e18
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def slow_down(self) -> None:
        now = self._clock()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            self._throttled_at = self.rate
            self._set(max(self.ceiling / 8, self.rate * DECREASE))

    def speed_up(self) -> None:
        if self.rate < self.ceiling:
            if self.rate < self._throttled_at:
                per_second = max(0.5, (self._throttled_at - self.rate) / 4)
            else:
                per_second = max(1.0, self.rate - self._throttled_at)
            # Each success adds per_second/rate: about `per_second` more requests per second,
            # each second.
            self._set(min(self.ceiling, self.rate + per_second / self.rate))

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
