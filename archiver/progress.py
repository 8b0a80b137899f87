"""What a person watching sees while a run goes: a live bar on a terminal, else status lines."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

log = logging.getLogger("archiver.progress")


class Progress(Protocol):
    def advance(self, status: str, size: int, call_id: str | None = None) -> None: ...
    def close(self) -> None: ...


def _describe(counts: Counter[str]) -> str:
    return " ".join(f"{status.replace('_', ' ')} {n}" for status, n in sorted(counts.items()))


class LiveBar:
    """A rich progress bar on stderr: calls done (of total when known) and counts by status."""

    def __init__(self, total: int | None, console: Console | None = None) -> None:
        self._counts: Counter[str] = Counter()
        self._bytes = 0
        self._bar = RichProgress(
            TextColumn("[bold]archiving"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID = self._bar.add_task("", total=total)
        self._bar.start()

    def advance(self, status: str, size: int, call_id: str | None = None) -> None:
        self._counts[status] += 1
        self._bytes += size
        mib = self._bytes / 2**20
        self._bar.update(
            self._task, advance=1, description=f"{_describe(self._counts)} · {mib:.1f} MiB"
        )

    def close(self) -> None:
        self._bar.stop()


class StatusLines:
    """For cron and pipes: one log line every `interval` seconds, no bar."""

    def __init__(self, interval: float = 30.0) -> None:
        self._interval = interval
        self._clock = time.monotonic
        self._last = self._clock()
        self._counts: Counter[str] = Counter()

    def advance(self, status: str, size: int, call_id: str | None = None) -> None:
        self._counts[status] += 1
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            log.info(
                "progress: %d calls done (%s)", sum(self._counts.values()), _describe(self._counts)
            )

    def close(self) -> None:
        pass


class NoProgress:
    def advance(self, status: str, size: int, call_id: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass
