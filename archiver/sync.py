"""`sync`: the listing feeds the worker pool as pages arrive, and the watermark moves (§2).

The watermark is the `call_picked_at` up to which every listed call has reached an outcome.
Windows come oldest first; a window counts as done when each of its calls has an outcome, and
the watermark moves to the end of the last window with every earlier one done, committed at
once. Pending and failed calls in the state are retried first, whatever the watermark, so it
may move past them without losing them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from archiver.api import OsviApi
from archiver.counts import RunView
from archiver.decide import taken_first
from archiver.errors import UsageError
from archiver.feed import BLOCK
from archiver.inputs import InvalidRow
from archiver.listing import (
    Filters,
    Pages,
    RetriedListing,
    Step,
    Window,
    layout_fields_of,
    started_at_of,
    walk,
)
from archiver.pipeline import Listed, Work
from archiver.state import State

log = logging.getLogger("archiver.sync")
WATERMARK_KEY = "sync_watermark"
LISTING = "<listing>"  # the source named by invalid rows from the listing


@dataclass(frozen=True)
class SyncPlan:
    start: datetime
    end: datetime
    filters: Filters
    moves_watermark: bool  # only when the window starts at or before the watermark (§2)


def plan(
    mark: datetime | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    overlap: float,
    filters: Filters,
) -> SyncPlan:
    """The window a sync covers: explicit times, else [`mark` (the watermark) - overlap, now]."""
    if since is None:
        if mark is None:
            raise no_watermark("this archive")
        since = datetime.fromtimestamp(mark.timestamp() - overlap, mark.tzinfo)
    # Never past now: calls can still arrive for a moment that has not come yet.
    end = min(until, now) if until else now
    if since > end:
        raise UsageError(f"--since ({since.isoformat()}) is after --until ({end.isoformat()})")
    return SyncPlan(since, end, filters, moves_watermark=mark is None or since <= mark)


def no_watermark(where: str) -> UsageError:
    """A plain sync of an archive that was never synced: it has no start."""
    return UsageError(
        f"{where} has no sync watermark yet: pass --since for the first sync "
        "(e.g. --since 7d or --since 2026-06-01)"
    )


def read_watermark(state: State) -> datetime | None:
    value = state.get_meta(WATERMARK_KEY)
    return datetime.fromisoformat(value) if value else None


class SyncSource:
    """The pool's `Source` for sync: retries first, then the listing, window by window."""

    def __init__(self, pages: Pages, state: State, sync: SyncPlan, view: RunView) -> None:
        self._state = state
        self._plan = sync
        self._retries = deque(taken_first(state, "sync"))
        view.add_total(len(self._retries))
        self._steps: AsyncIterator[Step] = walk(
            pages, sync.filters, sync.start, sync.end, on_total=view.add_total
        )
        self._unusable = 0  # listed items whose call_id is not a UUID, so far
        self._buffer: deque[Work] = deque()
        self._open: dict[int, tuple[Window, int]] = {}  # window number -> (window, calls left)
        self._first_open = 0

    async def next_block(self) -> list[Work] | None:
        """The calls retried first, in blocks; then each listing window's calls (and its
        unusable items, as invalid rows)."""
        if self._retries:
            count = min(len(self._retries), BLOCK)
            return [self._retries.popleft() for _ in range(count)]
        while not self._buffer:
            step = await anext(self._steps, None)
            if step is None:
                return None
            self._take(step)
        block = list(self._buffer)
        self._buffer.clear()
        return block

    def _take(self, step: Step) -> None:
        rows = unusable_rows(step.window, self._unusable)  # reported as invalid input rows are
        self._unusable += len(rows)
        self._buffer.extend(rows)
        self._open[step.number] = (step.window, len(step.calls))
        for item in step.calls:
            # The API client set aside every item whose call_id is not a UUID: canonical.
            self._buffer.append(
                Listed(item["call_id"], layout_fields_of(item), started_at_of(item), step.number)
            )
        self._advance()

    def finished(self, item: Work) -> None:
        if isinstance(item, Listed):
            window, left = self._open[item.window]
            self._open[item.window] = (window, left - 1)
            self._advance()

    def _advance(self) -> None:
        moved_to = None
        while self._first_open in self._open and self._open[self._first_open][1] == 0:
            moved_to = self._open.pop(self._first_open)[0].end
            self._first_open += 1
        if moved_to is not None and self._plan.moves_watermark:
            current = read_watermark(self._state)
            if current is None or moved_to > current:
                self._state.set_meta(WATERMARK_KEY, moved_to.isoformat())

    def close(self) -> None:
        pass


async def listed_ids(pages: Pages, sync: SyncPlan) -> AsyncIterator[str | InvalidRow]:
    """The ids the listing gives for the plan's window, as SyncSource takes them (`--dry-run`),
    and the unusable items as invalid rows."""
    unusable = 0
    async for step in walk(pages, sync.filters, sync.start, sync.end):
        rows = unusable_rows(step.window, unusable)
        unusable += len(rows)
        for row in rows:
            yield row
        for item in step.calls:
            yield item["call_id"]


def unusable_rows(window: Window, before: int) -> list[InvalidRow]:
    """The window's items whose call_id is not a UUID, as invalid rows of the listing (their
    line: the count of such items in this run's listing, `before` came earlier)."""
    return [
        InvalidRow(LISTING, before + n, "call_id is not a UUID", value)
        for n, value in enumerate(window.unusable, 1)
    ]


def make_source(
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    overlap: float,
    filters: Filters,
    max_attempts: int = 6,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Callable[[State, OsviApi, RunView], SyncSource]:
    """The factory `run.execute` calls once the state is open (the plan needs the watermark)."""

    def build(state: State, api: OsviApi, view: RunView) -> SyncSource:
        pages = RetriedListing(api, max_attempts, sleep)
        return SyncSource(
            pages, state, plan(read_watermark(state), since, until, now, overlap, filters), view
        )

    return build
