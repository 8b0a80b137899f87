"""The time a run reads and waits on, injected as one object (the tests step it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clocks:
    wall: Callable[[], float] = time.time  # URL ages, Retry-After dates, run ids
    monotonic: Callable[[], float] = time.monotonic  # pacing: immune to wall-clock jumps
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
