"""`--bwlimit RATE`: the total download bandwidth of a run, shared by all its downloads
(rclone's and aria2c's name and units: `10M` is 10 MiB/s, `512k` 512 KiB/s).

A token bucket: it fills at `rate` bytes a second up to `burst` (a tenth of a second's worth,
at least one network chunk, so a single stream is not cut into slivers); each chunk received
takes its size, waiting for the bucket to hold it. The waits queue in arrival order (one lock),
so the streams share the rate fairly. The time a download spends waiting here is the run's
own choice, not the host's slowness: it is not counted against `min_speed` (body.Pace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

MIN_BURST = 256 << 10  # one aiohttp chunk at least


class Bandwidth:
    def __init__(
        self,
        rate: float,
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth limit is a positive rate")
        self.rate = float(rate)
        self.burst = max(self.rate / 10, float(MIN_BURST))
        self._clock = monotonic
        self._sleep = sleep
        self._tokens = self.burst
        self._at = monotonic()
        self._turn = asyncio.Lock()

    def _fill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    async def take(self, count: int) -> float:
        """Wait until `count` bytes may be received; the seconds waited. A chunk larger than
        the burst is paid for in full (the bucket goes below zero), never refused."""
        async with self._turn:
            self._fill()
            self._tokens -= count
            if self._tokens >= 0:
                return 0.0
            wait = -self._tokens / self.rate
            await self._sleep(wait)
            self._fill()
            return wait
