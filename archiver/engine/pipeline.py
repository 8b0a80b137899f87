"""The run (§6): a feeder settles the input in blocks, a bounded pool of workers archives what
is left, one outcome per id.

The source hands over blocks of items (the run's input through feed.BlockInput, the listing
window by window). What needs no worker is settled there and then, in bulk: invalid rows,
other shards, ids this run already took, calls archived before whose file is still there (one
claim of the whole block in the state, a stat per file). The rest goes to a queue of
`concurrency` places, so at most `concurrency` calls are in flight and the input is read no
faster than the workers free up. De-duplication and "already archived" go through the state,
not through memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard, in_shard
from archiver.engine.call import CallArchiver
from archiver.engine.decide import Action, Skipped, decide
from archiver.engine.inputs import CallId, InputItem, InvalidRow
from archiver.monitoring.counts import RunView
from archiver.osvi.api import OsviApi
from archiver.osvi.limits import InFlight
from archiver.state.call_records import CallRecord, Filed
from archiver.state.database import State

log = logging.getLogger("archiver.engine.lifecycle")


@dataclass(frozen=True, slots=True)
class Listed:
    """A call from the API's listing, with what the listing told about it."""

    call_id: str
    fields: Mapping[str, str]  # layout fields: yyyy, mm, dd, agent_uuid when known
    started_at: float | None  # call_picked_at, else created_at (epoch), for pending (§5.4)
    window: int  # which listing window it came from (for the sync watermark)
    unanswered: str | None = None  # the listing's status of a call never answered


Work = InputItem | Listed
Call = CallId | Listed  # what a worker archives


class Source(Protocol):
    """Where the run takes calls from, a block at a time; told when each is done (sync moves
    its watermark)."""

    async def next_block(self) -> Sequence[Work] | None: ...
    def finished(self, item: Work) -> None: ...
    def close(self) -> None: ...


# How a command gives the run its calls: built once the state and the API exist (the run's
# input takes the state's pending calls first; sync's listing needs the watermark and the API).
SourceFactory = Callable[[State, OsviApi, RunView], Source]


@dataclass(frozen=True)
class PoolPlan:
    """How a run's pool settles and archives its calls."""

    run_id: str
    concurrency: int  # workers
    on_disk: Callable[[Filed], bool]  # Destination.on_disk: a stat in a folder
    force: bool = False  # --force: archived calls again (and not_available ones)
    retry_not_available: bool = False  # --retry-not-available: ask not_available calls again
    shard: Shard | None = None  # --shard K/N: only the ids whose shard is K
    # Workers stay `concurrency`; this window lets fewer of them work while throttled.
    in_flight: InFlight | None = None


class Pipeline:
    def __init__(self, state: State, archiver: CallArchiver, view: RunView, plan: PoolPlan) -> None:
        self._in_flight = plan.in_flight or InFlight(plan.concurrency, time.monotonic)
        self._shard = plan.shard
        self._state = state
        self._archiver = archiver
        self._run_id = plan.run_id
        self._on_disk = plan.on_disk
        self._concurrency = plan.concurrency
        self._force = plan.force
        self._retry_not_available = plan.retry_not_available
        self._settle: set[str] = set()  # ids the listing settled: recorded without a request
        self.counts = view.counts
        self._view = view
        self._retried: set[str] = set()  # ids taken from the state (pending/failed), few

    async def run(self, source: Source) -> None:
        work: asyncio.Queue[Call | None] = asyncio.Queue(maxsize=self._concurrency)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._feed(source, work))
                for _ in range(self._concurrency):
                    tasks.create_task(self._work(source, work))
        finally:
            source.close()

    async def _feed(self, source: Source, work: asyncio.Queue[Call | None]) -> None:
        while (block := await source.next_block()) is not None:
            for call in self.settle(block, source):
                await work.put(call)
        for _ in range(self._concurrency):
            await work.put(None)

    async def _work(self, source: Source, work: asyncio.Queue[Call | None]) -> None:
        while (item := await work.get()) is not None:
            if item.unanswered and item.call_id in self._settle:
                self._settle.discard(item.call_id)
                started = item.started_at if isinstance(item, Listed) else None
                record = self._archiver.unanswered(item.call_id, item.unanswered, started)
                await self._commit(item.call_id, record)
            elif isinstance(item, Listed):
                await self._archive(item.call_id, item.fields, item.started_at)
            else:
                await self._archive(item.call_id)
            source.finished(item)

    def settle(self, block: Sequence[Work], source: Source) -> list[Call]:
        """Settle what needs no worker; the claimed calls that do, in order."""
        calls: list[Call] = []
        for item in block:
            if isinstance(item, InvalidRow):
                self._invalid(item)
            elif not in_shard(item.call_id, self._shard):
                self.counts.other_shards += 1
            else:
                calls.append(item)
                continue
            source.finished(item)
        if not calls:
            return []
        claims = self._state.claim_block([item.call_id for item in calls], self._run_id)
        todo: list[Call] = []
        for item, (previous, repeat) in zip(calls, claims, strict=True):
            if self._skip(item, previous, repeat):
                source.finished(item)
            else:
                todo.append(item)
        return todo

    def _skip(self, item: Call, previous: Filed | None, repeat: bool) -> bool:
        if isinstance(item, CallId) and item.retried:
            self._retried.add(item.call_id)
        decision = decide(
            previous,
            repeat=repeat,
            retried=item.call_id in self._retried,
            force=self._force,
            on_disk=self._on_disk,
            retry_not_available=self._retry_not_available,
            unanswered=item.unanswered,
        )
        if decision.action is Action.SETTLE:
            self._settle.add(item.call_id)
        if decision.skipped is Skipped.ALREADY_ARCHIVED:
            self.counts.add("already_archived", item.call_id, None)
        elif decision.skipped is Skipped.ALREADY_NOT_AVAILABLE:
            self.counts.add("already_not_available", item.call_id, None)
        elif decision.skipped is Skipped.DUPLICATE:
            self.counts.duplicates += 1
        elif decision.skipped is Skipped.RETRIED_AGAIN:
            self._view.retried_again += 1
        return decision.action is Action.SKIP

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

    async def _archive(
        self, call_id: str, fields: Mapping[str, str] | None = None, started: float | None = None
    ) -> None:
        async with self._in_flight:
            record = await self._archiver.archive(call_id, fields, started)
        self._in_flight.succeeded()
        await self._commit(call_id, record)

    async def _commit(self, call_id: str, record: CallRecord) -> None:
        """Record a call's outcome, durable before it is counted."""
        self._state.record(record)
        status = record.status or Status.FAILED
        try:
            await self._state.durable()  # on disk (fsynced) before it is counted anywhere
        except asyncio.CancelledError:
            # the run's last commit keeps it
            self.counts.add(status, call_id, record.bytes, record.error_kind)
            raise
        self.counts.add(status, call_id, record.bytes, record.error_kind)
