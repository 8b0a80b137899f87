"""How long the event loop stalled at most during a run: a regression guard (issue 12).

A task asks to wake every INTERVAL and notes how late it woke: the longest delay is how long
the loop was kept from everything else (downloads, signals, displays) at once. It goes in the
run report as `max_loop_lag_ms` (and at -v, in the log), so a change that blocks the loop shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

INTERVAL = 0.05


class LoopLag:
    def __init__(self) -> None:
        self.worst = 0.0  # seconds

    @property
    def worst_ms(self) -> float:
        return round(self.worst * 1000, 1)

    async def _watch(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(INTERVAL)
            self.worst = max(self.worst, time.monotonic() - asked - INTERVAL)


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[LoopLag]:
    lag = LoopLag()
    task = asyncio.create_task(lag._watch())
    try:
        yield lag
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
