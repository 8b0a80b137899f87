"""The run (§6): a bounded pool of workers pulling ids as they free up, one outcome per id.

The input iterator is advanced only by a worker that is free, in a thread (stdin may block),
so at most `concurrency` calls are in flight and the input is read no faster than that.
De-duplication and "already archived" go through the state, not through memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from archiver.archive import CallArchiver
from archiver.inputs import InputItem, InvalidRow, shard_of
from archiver.limits import InFlight
from archiver.progress import RunView
from archiver.state import CallRecord, State

log = logging.getLogger("archiver.run")


_Request = tuple[asyncio.AbstractEventLoop, "asyncio.Future[InputItem | None]"]


class SharedInput:
    """A `Source` over one input iterator shared by all workers, one item per request.

    Reads happen in a daemon thread of its own, not asyncio's default executor: a read blocked
    on a quiet stdin must not keep the process from exiting after Ctrl-C.
    """

    def __init__(self, items: Iterator[InputItem]) -> None:
        self._items = items
        self._lock = asyncio.Lock()
        self._done = False
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="osvi-input", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._answer()
        finally:
            # Close the input here, in the only thread that advances it, so a run that stops
            # early releases its files at once rather than whenever it is collected.
            close = getattr(self._items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _answer(self) -> None:
        while (request := self._requests.get()) is not None:
            loop, future = request
            try:
                item, error = next(self._items, None), None
            except BaseException as exc:  # handed to the worker that asked, not lost here
                item, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop may be gone after a signal
                loop.call_soon_threadsafe(_settle, future, item, error)

    async def next(self) -> InputItem | None:
        async with self._lock:
            if self._done:
                return None
            loop = asyncio.get_running_loop()
            future: asyncio.Future[InputItem | None] = loop.create_future()
            self._requests.put((loop, future))
            item = await future
            self._done = item is None
            return item

    def finished(self, item: Work) -> None:
        pass

    def close(self) -> None:
        self._requests.put(None)


def _settle(
    future: asyncio.Future[InputItem | None], item: InputItem | None, error: BaseException | None
) -> None:
    if future.done():  # its worker was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(item)


@dataclass(frozen=True, slots=True)
class Listed:
    """A call from the API's listing, with what the listing told about it."""

    call_id: str
    fields: Mapping[str, str]  # layout fields: yyyy, mm, dd, agent_uuid when known
    started_at: float | None  # call_picked_at, else created_at (epoch), for pending (§5.4)
    window: int  # which listing window it came from (for the sync watermark)


Work = InputItem | Listed
# Sources of ids the run takes from the archive's own state rather than from its input.
STATE_SOURCES = frozenset({"<pending>", "<retry-failed>", "<pending or failed>"})


class Source(Protocol):
    """Where workers take calls from; told when each is done (sync moves its watermark)."""

    async def next(self) -> Work | None: ...
    def finished(self, item: Work) -> None: ...
    def close(self) -> None: ...


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
        view: RunView,
        shard: tuple[int, int] | None = None,
        in_flight: InFlight | None = None,
    ) -> None:
        # Workers stay `concurrency`; this window lets fewer of them work while throttled.
        self._in_flight = in_flight or InFlight(concurrency, time.monotonic)
        self._shard = shard
        self._state = state
        self._archiver = archiver
        self._run_id = run_id
        self._out_dir = out_dir
        self._concurrency = concurrency
        self._force = force
        self.counts = view.counts
        self._view = view
        self._retried: set[str] = set()  # ids taken from the state (pending/failed), few

    async def run(self, source: Source) -> None:
        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(self._concurrency):
                    workers.create_task(self._work(source))
        finally:
            source.close()

    async def _work(self, source: Source) -> None:
        while (item := await source.next()) is not None:
            if self._shard and not isinstance(item, InvalidRow) and not self._mine(item.call_id):
                self.counts.other_shards += 1
            elif isinstance(item, InvalidRow):
                self._invalid(item)
            elif isinstance(item, Listed):
                await self._one(item.call_id, item.fields, item.started_at)
            else:
                if item.source in STATE_SOURCES:
                    self._retried.add(item.call_id)
                await self._one(item.call_id)
            source.finished(item)

    def _mine(self, call_id: str) -> bool:
        assert self._shard is not None
        index, count = self._shard
        return shard_of(call_id, count) == index

    def _invalid(self, row: InvalidRow) -> None:
        log.warning(
            "invalid row %s line %d: %s (%s)",
            row.source,
            row.line,
            row.reason,
            row.value,
            extra={"event": "invalid_row", "source": row.source, "line": row.line},
        )
        self._state.add_invalid_row(self._run_id, row.source, row.line, row.reason, row.value)
        self.counts.invalid_rows += 1

    async def _one(
        self, call_id: str, fields: Mapping[str, str] | None = None, started: float | None = None
    ) -> None:
        previous, repeat = self._state.claim(call_id, self._run_id)
        if repeat:
            # A call the archive retried first and the input names again is no duplicate row.
            if call_id not in self._retried:
                self.counts.duplicates += 1
            else:
                self._view.retried_again += 1
            return
        if not self._force and self._still_archived(previous):
            self.counts.add("already_archived", call_id, None)
            return
        async with self._in_flight:
            record = await self._archiver.archive(call_id, fields, started)
        self._in_flight.succeeded()
        self._state.record(record)
        status = record.status or "failed"
        try:
            await self._state.durable()  # on disk (fsynced) before it is counted anywhere
        except asyncio.CancelledError:
            self.counts.add(status, call_id, record.bytes)  # the run's last commit keeps it
            raise
        self.counts.add(status, call_id, record.bytes)

    def _still_archived(self, previous: CallRecord | None) -> bool:
        return previous is not None and still_archived(self._out_dir, previous)


def still_archived(out_dir: Path, record: CallRecord) -> bool:
    """Archived before and still on disk with the right size: nothing to do (a full re-hash
    is `verify`'s job)."""
    if record.status != "archived" or record.path is None:
        return False
    try:
        return (out_dir / record.path).stat().st_size == record.bytes
    except OSError:
        return False
