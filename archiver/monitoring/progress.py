"""What a person watching sees while a run goes (SPEC §3 `progress`, issue 7).

The pipeline keeps a `RunView` up to date (counts, the total when known, the downloads in
flight); a display reads it on its own schedule, in the event loop's thread, so nothing is
done per byte or per call for the display's sake:

- `LiveDisplay` (a terminal): a rich live region on stderr, redrawn 4 times a second: ids done
  of the total, a bar, ETA, counts per status, bytes and rate, each download in flight with
  its size and progress. Log lines are printed above it (rich redirects stderr while it is
  live; the log handler writes to the current sys.stderr), so they are never garbled.
- `StatusLines` (cron, pipes): no bar; one log line (event `progress`) every `interval`.
- `NoProgress`: nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from archiver.monitoring.counts import Counts, NoProgress, Progress, Receiving, RunView
from archiver.monitoring.summary import size_text

log = logging.getLogger("archiver.monitoring.progress")
REFRESH = 0.25  # seconds between two frames of the live display
RATE_WINDOW = 10.0  # seconds of history behind the byte rate
MAX_DOWNLOADS_SHOWN = 8
_STATUSES = (
    ("archived", "archived"),
    ("already_archived", "already archived"),
    ("already_not_available", "already not available"),
    ("pending", "pending"),
    ("not_available", "not available"),
    ("failed", "failed"),
    ("duplicates", "duplicates"),
    ("invalid_rows", "invalid rows"),
    ("other_shards", "other shards"),
)


class ByteRate:
    """Bytes per second over the last RATE_WINDOW seconds, from samples the display takes."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total_bytes: int) -> float:
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and self._samples[0][0] < now - RATE_WINDOW:
            self._samples.popleft()
        first_time, first_bytes = self._samples[0]
        if now - first_time <= 0:
            return 0.0
        return max(0, total_bytes - first_bytes) / (now - first_time)


def eta(view: RunView, now: float) -> float | None:
    """Seconds left at the pace of the calls that needed work: skipped ids (already archived,
    repeats, other shards', invalid rows) take next to no time, so counting them as progress
    made a resumed run's ETA far too short (7 s shown, 33 s taken). Each id left is taken to
    need work, the time so far to have gone to the work done. None while unknown (no total,
    no call worked on yet)."""
    c = view.counts
    worked = c.archived + c.pending + c.not_available + c.failed
    if view.total is None or worked == 0:
        return None
    left: float = max(0, view.total - view.done)
    if view.done and c.other_shards:  # a --shard K/N run: the others' ids cost nothing either
        left *= 1 - c.other_shards / view.done
    return left * (now - view.started) / worked


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def statuses_text(counts: Counts) -> str:
    """Counts per status: archived and failed always, the others once they happen."""
    return ", ".join(
        f"{label} {getattr(counts, name):,}"
        for name, label in _STATUSES
        if getattr(counts, name) or name in ("archived", "failed")
    )


def status_line(view: RunView, now: float, rate: float) -> str:
    """The one-line status of a run, as cron and pipes get it every interval."""
    done = (
        f"{view.done:,} of {view.total:,} ids" if view.total is not None else f"{view.done:,} ids"
    )
    if view.total:
        done += f" ({100 * view.done / view.total:.0f}%)"
    left = eta(view, now)
    parts = [
        f"progress: {done}",
        statuses_text(view.counts),
        f"{size_text(view.bytes_now())} at {size_text(rate)}/s",
        f"{len(view.downloads)} downloading",
        f"elapsed {duration_text(now - view.started)}",
    ]
    if left is not None:
        parts.append(f"ETA {duration_text(left)}")
    return "; ".join(parts)


class _Ticking:
    """A display that does its work every `interval` seconds in a task of the event loop."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._rate = ByteRate()
        self.view = RunView()

    def start(self, view: RunView) -> None:
        self.view = view
        self._rate.sample(self._clock(), view.bytes_now())
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.tick()

    def rate(self) -> float:
        return self._rate.sample(self._clock(), self.view.bytes_now())

    def tick(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class StatusLines(_Ticking):
    """For cron and pipes: no bar, one status line every `interval` seconds (a log record
    with event `progress`, so JSON logs carry it as fields too)."""

    def tick(self) -> None:
        now, view = self._clock(), self.view
        left = eta(view, now)
        log.info(
            "%s",
            status_line(view, now, self.rate()),
            extra={
                "event": "progress",
                "done": view.done,
                "total": view.total,
                "counts": {name: getattr(view.counts, name) for name, _ in _STATUSES},
                "bytes": view.bytes_now(),
                "downloading": len(view.downloads),
                "eta_seconds": round(left) if left is not None else None,
            },
        )


class LiveDisplay(_Ticking):
    """A live region on stderr (rich), for a person at a terminal."""

    def __init__(self, console: Console | None = None, interval: float = REFRESH) -> None:
        super().__init__(interval)
        self._console = console or Console(stderr=True)
        self._live: Live | None = None

    def start(self, view: RunView) -> None:
        super().start(view)
        self._live = Live(
            get_renderable=self.render,
            console=self._console,
            auto_refresh=False,  # redrawn by tick(), in the loop's thread: no races on the view
            transient=True,  # the summary block follows and says it all
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start(refresh=True)

    def tick(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def close(self) -> None:
        super().close()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def render(self) -> RenderableType:
        view, now = self.view, self._clock()
        rate, left = self.rate(), eta(view, now)
        head = Table.grid(padding=(0, 1))
        done = f"{view.done:,}" + (f" of {view.total:,}" if view.total is not None else "")
        when = f"ETA {duration_text(left)}" if left is not None else ""
        head.add_row(
            Text("archiving", style="bold"),
            ProgressBar(total=view.total or None, completed=view.done, width=30),
            Text(f"{done} ids"),
            Text(f"{duration_text(now - view.started)} elapsed {when}".rstrip()),
        )
        lines: list[RenderableType] = [
            head,
            Text(statuses_text(view.counts)),
            Text(f"{size_text(view.bytes_now())} at {size_text(rate)}/s, "
                 f"{len(view.downloads)} downloading"),
        ]  # fmt: skip
        for call_id, download in list(view.downloads.items())[:MAX_DOWNLOADS_SHOWN]:
            lines.append(Text(f"  {call_id}  {_download_text(download)}", style="dim"))
        more = len(view.downloads) - MAX_DOWNLOADS_SHOWN
        if more > 0:
            lines.append(Text(f"  … and {more} more", style="dim"))
        return Group(*lines)


def _download_text(download: Receiving) -> str:
    got = download.arrived
    if download.total:
        return (
            f"{size_text(got)} of {size_text(download.total)} ({100 * got / download.total:.0f}%)"
        )
    return size_text(got) if got else "starting"


def choose_progress(mode: str, *, on_terminal: bool, interval: float) -> Progress:
    """`progress` auto: the live display on a terminal (and text logs), status lines
    otherwise (cron, pipes, JSON logs, whose stderr is then JSON Lines only); always: the live
    display even off a terminal; never: nothing."""
    if mode == "always":
        return LiveDisplay(Console(stderr=True, force_terminal=True))
    if mode == "auto" and on_terminal:
        return LiveDisplay()
    if mode == "never":
        return NoProgress()
    return StatusLines(interval)
