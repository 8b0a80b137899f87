"""`sync`: the listing feeds the worker pool as pages arrive, and the watermark moves (§2).

The watermark is the `call_picked_at` up to which every listed call has reached an outcome.
Windows come oldest first; a window counts as done when each of its calls has an outcome, and
the watermark moves to the end of the last window with every earlier one done, committed at
once. A window the listing could not be walked through completely (osvi/listing.py) is never done:
the watermark stops before it for good in this run, and the run exits 1 naming it. Pending
and failed calls in the state are retried first, whatever the watermark, so it may move past
them without losing them.

A watermark is a claim about every call of one listing: each filter set keeps its own
(`watermark_key`). The default listing's (`--status picked`, nothing else) is the archive's
watermark, which a sync with any other filter set never reads nor moves (issue 20: a
one-agent sync moved it to now, and the plain syncs after it never listed the other agents'
calls of that span).

At the end, the sync checks its own window from the state (`conclude`): how many of the
calls it listed hold an outcome; the summary and the run report say whether it is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from archiver.archive.shard import in_shard
from archiver.engine.decide import taken_first
from archiver.engine.input_feed import BLOCK
from archiver.engine.inputs import InvalidRow
from archiver.engine.pipeline import Listed, Work
from archiver.errors import LocalError, UsageError
from archiver.monitoring.counts import RunView
from archiver.osvi.api import OsviApi
from archiver.osvi.listing import (
    Filters,
    Gap,
    Pages,
    RetriedListing,
    Step,
    Window,
    layout_fields_of,
    started_at_of,
    unanswered,
    walk,
)
from archiver.osvi.reconcile import NO_OUTCOME, WindowReport
from archiver.osvi.times import Span
from archiver.state.database import State
from archiver.state.meta import (
    WATERMARK_KEY,
    filtered_watermark_key,
    watermark_at,
)

log = logging.getLogger("archiver.engine.sync")
LISTING = "<listing>"  # the source named by invalid rows from the listing
DEFAULT_FILTERS = Filters(status=("picked",))  # a plain sync's: the calls with recordings


def is_default(filters: Filters) -> bool:
    """Whether this is the default listing's filter set (its watermark is the archive's)."""
    return filters.params() == DEFAULT_FILTERS.params()


def watermark_key(filters: Filters) -> str:
    """The state's meta key of this filter set's watermark: `sync_watermark` for the default
    listing (as it always was), else one of its own, keyed by the normalised set."""
    return WATERMARK_KEY if is_default(filters) else filtered_watermark_key(filters.params())


@dataclass(frozen=True)
class SyncPlan:
    start: datetime
    end: datetime
    filters: Filters
    moves_watermark: bool  # only when the window starts at or before the watermark (§2)

    @property
    def key(self) -> str:
        return watermark_key(self.filters)


def plan(mark: datetime | None, span: Span, overlap: float, filters: Filters) -> SyncPlan:
    """The window a sync covers: explicit times, else [`mark` (this filter set's watermark)
    - overlap, now]."""
    since = span.since
    if since is None:
        if mark is None:
            raise no_watermark("this archive", filters)
        since = datetime.fromtimestamp(mark.timestamp() - overlap, mark.tzinfo)
    end = span.end  # never past now
    if since > end:
        raise UsageError(f"--since ({since.isoformat()}) is after --until ({end.isoformat()})")
    return SyncPlan(since, end, filters, moves_watermark=mark is None or since <= mark)


def no_watermark(where: str, filters: Filters = DEFAULT_FILTERS) -> UsageError:
    """A plain sync of an archive (or filter set) that was never synced: it has no start."""
    which = "" if is_default(filters) else f" for these filters ({filters.text()})"
    return UsageError(
        f"{where} has no sync watermark{which} yet: pass --since for the first sync "
        "(e.g. --since 7d or --since 2026-06-01)"
    )


def read_watermark(state: State, filters: Filters = DEFAULT_FILTERS) -> datetime | None:
    """This filter set's watermark (the default listing's: the archive's)."""
    return watermark_at(state, watermark_key(filters))


@dataclass
class _Open:
    """A window whose calls are not all done yet."""

    window: Window
    left: int  # its calls without an outcome yet


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
        self._counts = view.counts
        self._unusable = 0  # listed items whose call_id is not a UUID, so far
        self._buffer: deque[Work] = deque()
        self._open: dict[int, _Open] = {}  # window number -> its window and calls left
        self._first_open = 0
        self._stuck = False  # a window it could not list: the watermark moves no more
        self.report = WindowReport(
            sync.start, sync.end, sync.filters.text(), sync.key, is_default(sync.filters)
        )
        state.start_listing()

    async def next_block(self) -> list[Work] | None:
        """The calls retried first, in blocks; then each listing window's calls (and its
        unusable items, as invalid rows)."""
        if self._retries:
            count = min(len(self._retries), BLOCK)
            return [self._retries.popleft() for _ in range(count)]
        while not self._buffer:
            step = await anext(self._steps, None)
            if step is None:
                self.report.walked = True
                return None
            self._take(step)
        block = list(self._buffer)
        self._buffer.clear()
        return block

    def _take(self, step: Step) -> None:
        rows = unusable_rows(step, self._unusable)  # reported as invalid input rows are
        self._unusable += len(rows)
        self.report.unusable += len(rows)
        self._buffer.extend(rows)
        gap = step.window.gap()
        if gap is not None:
            self._gap(gap)
        self._open[step.number] = _Open(step.window, len(step.calls))
        # The API client set aside every item whose call_id is not a UUID: canonical.
        ids = [item["call_id"] for item in step.calls]
        self._state.note_listed([i for i in ids if in_shard(i, self._state.shard)])
        for item in step.calls:
            self._buffer.append(
                Listed(
                    item["call_id"],
                    layout_fields_of(item),
                    started_at_of(item),
                    step.number,
                    unanswered(item),
                )
            )
        self._advance()

    def _gap(self, gap: Gap) -> None:
        """A window the listing could not be walked through: said, counted (exit 1), and the
        watermark stops before it."""
        self.report.gaps.append(gap)
        self._counts.incomplete_windows += 1
        log.error(
            "could not list %s; the sync watermark stays before it and the next sync lists it "
            "again",
            gap.text(),
            extra={"event": "listing_incomplete", "start": gap.to_json()["start"],
                   "end": gap.to_json()["end"]},
        )  # fmt: skip

    def finished(self, item: Work) -> None:
        if isinstance(item, Listed):
            self._open[item.window].left -= 1
            self._advance()

    def _advance(self) -> None:
        moved_to = None
        while not self._stuck:
            entry = self._open.get(self._first_open)
            if entry is None or entry.left:
                break
            del self._open[self._first_open]
            if not entry.window.complete:
                self._stuck = True
                break
            moved_to = entry.window.end
            self._first_open += 1
        if moved_to is not None and self._plan.moves_watermark:
            try:
                current = read_watermark(self._state, self._plan.filters)
            except LocalError:  # damaged: this sync (--since) sets it anew (start_mark)
                current = None
            if current is None or moved_to > current:
                self._state.set_meta(self._plan.key, moved_to.isoformat())

    def conclude(self) -> WindowReport:
        """The window checked from the state, as committed: how many of its listed calls
        hold each outcome (osvi/reconcile.py judges whether that is complete)."""
        found = self._state.listed_outcomes()
        self.report.outcomes = {status or NO_OUTCOME: n for status, n in found.items()}
        return self.report

    def close(self) -> None:
        pass


class ListedId(NamedTuple):
    """A call the listing gave (`--dry-run`): its id, and its status if never answered."""

    call_id: str
    unanswered: str | None


async def listed_ids(pages: Pages, sync: SyncPlan) -> AsyncIterator[ListedId | InvalidRow | Window]:
    """The ids the listing gives for the plan's window, as SyncSource takes them (`--dry-run`),
    the unusable items as invalid rows, and each window it could not list completely."""
    unusable = 0
    async for step in walk(pages, sync.filters, sync.start, sync.end):
        rows = unusable_rows(step, unusable)
        unusable += len(rows)
        for row in rows:
            yield row
        if not step.window.complete:
            yield step.window
        for item in step.calls:
            yield ListedId(item["call_id"], unanswered(item))


def unusable_rows(step: Step, before: int) -> list[InvalidRow]:
    """The step's items whose call_id is not a UUID, as invalid rows of the listing (their
    line: the count of such items in this run's listing, `before` came earlier)."""
    return [
        InvalidRow(LISTING, before + n, "call_id is not a UUID", value)
        for n, value in enumerate(step.unusable, 1)
    ]


def start_mark(state: State, filters: Filters, since: datetime | None) -> datetime | None:
    """The watermark a sync starts from. A damaged one stops a plain sync (it has no start:
    LocalError, exit 4); with --since it is set anew, as by a first sync."""
    try:
        return read_watermark(state, filters)
    except LocalError as exc:
        if since is None:
            raise
        log.warning("%s; this sync (--since) sets it anew", exc, extra={"event": "watermark_reset"})
        return None


def make_source(
    span: Span,
    overlap: float,
    filters: Filters,
    max_attempts: int = 6,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Callable[[State, OsviApi, RunView], SyncSource]:
    """The factory `run.execute` calls once the state is open (the plan needs the watermark)."""

    def build(state: State, api: OsviApi, view: RunView) -> SyncSource:
        pages = RetriedListing(api, max_attempts, sleep)
        mark = start_mark(state, filters, span.since)
        source = SyncSource(pages, state, plan(mark, span, overlap, filters), view)
        view.listing = source.conclude
        return source

    return build
