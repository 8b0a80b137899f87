"""The run (§6): a bounded pool of workers pulling ids as they free up, one outcome per id.

The input iterator is advanced only by a worker that is free, in a thread (stdin may block),
so at most `concurrency` calls are in flight and the input is read no faster than that.
De-duplication and "already archived" go through the state, not through memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

from archiver.archive import CallArchiver
from archiver.inputs import InputItem, InvalidRow
from archiver.progress import Progress
from archiver.state import CallRecord, State
from archiver.summary import Counts

log = logging.getLogger("archiver.run")


class SharedInput:
    """One input iterator shared by all workers; read off the event loop, one at a time."""

    def __init__(self, items: Iterator[InputItem]) -> None:
        self._items = items
        self._lock = asyncio.Lock()
        self._done = False

    async def next(self) -> InputItem | None:
        async with self._lock:
            if self._done:
                return None
            item = await asyncio.to_thread(next, self._items, None)
            self._done = item is None
            return item


class Pipeline:
    def __init__(
        self,
        state: State,
        archiver: CallArchiver,
        *,
        run_id: str,
        out_dir: Path,
        concurrency: int,
        force: bool,
        progress: Progress,
    ) -> None:
        self._state = state
        self._archiver = archiver
        self._run_id = run_id
        self._out_dir = out_dir
        self._concurrency = concurrency
        self._force = force
        self._progress = progress
        self.counts = Counts()

    async def run(self, items: Iterator[InputItem]) -> None:
        shared = SharedInput(items)
        async with asyncio.TaskGroup() as workers:
            for _ in range(self._concurrency):
                workers.create_task(self._work(shared))

    async def _work(self, shared: SharedInput) -> None:
        while (item := await shared.next()) is not None:
            if isinstance(item, InvalidRow):
                self._invalid(item)
            else:
                await self._one(item.call_id)

    def _invalid(self, row: InvalidRow) -> None:
        log.warning("invalid row %s line %d: %s (%s)", row.source, row.line, row.reason, row.value)
        self._state.add_invalid_row(self._run_id, row.source, row.line, row.reason, row.value)
        self.counts.invalid_rows += 1

    async def _one(self, call_id: str) -> None:
        previous, repeat = self._state.claim(call_id, self._run_id)
        if repeat:
            self.counts.duplicates += 1
            return
        if not self._force and self._still_archived(previous):
            self.counts.add("already_archived", call_id, None)
            self._progress.advance("already_archived", 0)
            return
        self._progress.started(call_id)
        record = await self._archiver.archive(call_id)
        self._state.record(record)
        status = record.status or "failed"
        self.counts.add(status, call_id, record.bytes)
        self._progress.advance(status, record.bytes or 0, call_id)

    def _still_archived(self, previous: CallRecord | None) -> bool:
        """Archived before and still on disk with the right size: nothing to do."""
        if previous is None or previous.status != "archived" or previous.path is None:
            return False
        try:
            return (self._out_dir / previous.path).stat().st_size == previous.bytes
        except OSError:
            return False
