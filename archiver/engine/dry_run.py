"""`--dry-run` on `run` and `sync` (SPEC §3): what a run would do, and why, doing none of it.

Reads and validates the input (for `sync`, the API's listing: that needs the token), consults
the archive's state read-only, and prints one line per call on stdout, tab-separated for
`cut`/`grep`: `download` or `skip`, the call id, the reason. Invalid rows are printed as
`invalid`, with their source and line. Ids of other shards are only counted (a `--shard 0/1000`
dry run would otherwise print a million lines about other machines' work).

Nothing is written: no lock, no state, no folder, no manifest, no report; no recording URL is
asked for. The state is opened read-only when it exists (a run going on meanwhile is fine: the
answer is then as of that moment). Duplicates are found with a set of the ids seen, in memory
(about 100 bytes per id) since the state cannot be used for it without writing.
Exit code 1 when the input has invalid rows or the listing has windows it could not walk through
(as the run would), else 0.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from archiver.archive.shard import Shard, in_shard
from archiver.config.settings import Settings, require_token
from archiver.destinations import open_destination, warn_other_sharding
from archiver.engine.assembly import open_api
from archiver.engine.decide import Action, Decision, Skipped, decide, taken_first
from archiver.engine.inputs import InputItem, InvalidRow
from archiver.engine.sync import ListedId, listed_ids, plan, start_mark
from archiver.osvi.listing import Filters, RetriedListing, Window
from archiver.osvi.times import Span
from archiver.state.call_records import Filed
from archiver.state.database import State

log = logging.getLogger("archiver.engine.dry_run")


@dataclass
class DryRunCounts:
    download: Counter[str] = field(default_factory=Counter)  # by reason
    skip: Counter[str] = field(default_factory=Counter)
    settle: Counter[str] = field(default_factory=Counter)  # recorded without a request
    invalid_rows: int = 0
    other_shards: int = 0
    incomplete_windows: int = 0

    def render(self) -> str:
        def listed(counts: Counter[str]) -> str:
            return ", ".join(f"{n:,} {reason}" for reason, n in counts.most_common()) or "none"

        lines = [
            "── osvi-archiver dry run: nothing was downloaded or written ──",
            f"would download    {sum(self.download.values()):,} ({listed(self.download)})",
            f"would skip        {sum(self.skip.values()):,} ({listed(self.skip)})",
            *(
                [
                    f"would settle      {sum(self.settle.values()):,} as not available, asking "
                    f"nothing ({listed(self.settle)})"
                ]
                if self.settle
                else []
            ),
            f"invalid rows      {self.invalid_rows:,}",
        ]
        if self.incomplete_windows:
            n = self.incomplete_windows
            lines.append(f"not listed        {n:,} window{'' if n == 1 else 's'} (see above)")
        if self.other_shards:
            lines.append(f"other shards      {self.other_shards:,}")
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        return 1 if self.invalid_rows or self.incomplete_windows else 0


class DryRun:
    def __init__(
        self,
        state: State | None,
        on_disk: Callable[[Filed], bool],
        out: TextIO,
        *,
        force: bool = False,
        shard: Shard | None = None,
        retry_not_available: bool = False,
    ) -> None:
        self._state = state
        self._on_disk = on_disk
        self._out = out
        self._force = force
        self._retry_not_available = retry_not_available
        self._shard = shard
        self._seen: set[int] = set()
        self._retried: set[int] = set()  # ids taken from the state first: no duplicates
        self.counts = DryRunCounts()

    def items(self, items: Iterable[InputItem]) -> None:
        for item in items:
            if isinstance(item, InvalidRow):
                self._invalid(item)
            else:
                self.call(item.call_id, retried=item.retried, unanswered=item.unanswered)

    async def listed(self, listed: AsyncIterator[ListedId | InvalidRow | Window]) -> None:
        async for item in listed:
            if isinstance(item, InvalidRow):
                self._invalid(item)
            elif isinstance(item, Window):  # a window the listing could not walk through
                self.counts.incomplete_windows += 1
                print(f"incomplete\t{item.span()}\t{item.problem}", file=self._out)
            else:
                self.call(item.call_id, unanswered=item.unanswered)

    def _invalid(self, row: InvalidRow) -> None:
        self.counts.invalid_rows += 1
        print(f"invalid\t{row.source} line {row.line}\t{row.reason} ({row.value})", file=self._out)

    def call(self, call_id: str, *, retried: bool = False, unanswered: str | None = None) -> None:
        """One id; `retried` when the run takes it from the state (pending, failed) first.
        The same decision as the run's (decide.decide); only the repeats are found another
        way (a set here, the state's temporary table in the run)."""
        if not in_shard(call_id, self._shard):
            self.counts.other_shards += 1
            return
        key = int(call_id.replace("-", ""), 16)
        repeat = key in self._seen
        self._seen.add(key)
        if retried:
            self._retried.add(key)
        previous = self._state.get(call_id) if self._state and not repeat else None
        decision = decide(
            previous,
            repeat=repeat,
            retried=key in self._retried,
            force=self._force,
            on_disk=self._on_disk,
            retry_not_available=self._retry_not_available,
            unanswered=unanswered,
        )
        if decision.skipped is not Skipped.RETRIED_AGAIN:  # said once, when taken first
            self._say(call_id, decision)

    def _say(self, call_id: str, decision: Decision) -> None:
        counts = self.counts.download if decision.download else self.counts.skip
        if decision.action is Action.SETTLE:
            counts = self.counts.settle
        counts[decision.reason] += 1
        print(f"{decision.action}\t{call_id}\t{decision.reason}", file=self._out)


def dry_run_input(
    settings: Settings,
    items: Iterator[InputItem],
    *,
    force: bool,
    retry: bool,
    shard: Shard | None,
    retry_not_available: bool = False,
) -> int:
    """`run --dry-run`: the state read-only, the input read; no token needed, nothing asked."""
    destination = open_destination(settings)
    warn_other_sharding(destination, shard)
    with destination.viewing(shard) as state:
        dry = DryRun(state, destination.on_disk(), sys.stdout, force=force, shard=shard,
                     retry_not_available=retry_not_available)  # fmt: skip
        dry.items(
            taken_first(state, "run", retry_failed=retry, retry_not_available=retry_not_available)
        )
        dry.items(items)
    print(dry.counts.render(), file=sys.stderr)
    return dry.counts.exit_code


def dry_run_sync(
    settings: Settings,
    span: Span,
    filters: Filters,
    *,
    force: bool,
    shard: Shard | None,
    retry_not_available: bool = False,
) -> int:
    """`sync --dry-run`: lists calls through the API (no recording URL), state read-only."""
    require_token(settings)  # before a line is printed: the listing needs it
    destination = open_destination(settings)
    warn_other_sharding(destination, shard)

    async def go(dry: DryRun, state: State | None) -> None:
        mark = start_mark(state, filters, span.since) if state else None
        sync = plan(mark, span, settings.sync_overlap, filters)
        async with open_api(settings) as api:
            await dry.listed(listed_ids(RetriedListing(api, settings.max_attempts), sync))

    with destination.viewing(shard) as state:
        dry = DryRun(state, destination.on_disk(), sys.stdout, force=force, shard=shard,
                     retry_not_available=retry_not_available)  # fmt: skip
        dry.items(taken_first(state, "sync"))
        asyncio.run(go(dry, state))
    print(dry.counts.render(), file=sys.stderr)
    return dry.counts.exit_code
