"""`osvi-archiver check`: the archive reconciled with the API's listing of a window (issue 20).

`rclone check` compares two remotes; here the API's listing is the source of truth. The window
is walked exactly as `sync` walks it (listing.walk: the same code, the same distrust of every
count the API gives), nothing else is asked of the API (no recording URL), and each listed
call is looked up in the archive's state, read-only: no lock, beside a running nightly, on a
folder or a bucket (whose state is its snapshot). A folder shared by shards is looked up in
the states that own each call.

- missing: listed calls the archive does not hold as archived, pending or not available
  (reconcile.HELD), with why: never seen, failed (its kind and message), or no outcome (in
  flight in a run going on, or taken by a run that stopped first);
- not synced yet: such calls less than GRACE old and picked after the watermark of these
  filters less `sync_overlap` (where the next plain sync starts: a call listed late is taken
  by it), which the next nightly sync takes: shown, not missing. Older than GRACE, a call is
  missing whatever the watermark says (a sync that stopped moving it, a window it could not
  list); with no watermark at all (an archive filled by `run`), every call not held is
  missing;
- pending: held (every run asks again), shown with since when;
- unlisted: archived calls whose call time falls in the window and that the listing does not
  show anywhere: reported, not an error (a voicemail archived by `run`, a call the API no
  longer lists). Only when the listing is filtered by --status alone and lists picked calls,
  and only for calls whose time the state keeps (recorded since schema 5);
- the counts per outcome, the windows the listing could not give, and the watermarks.

The window: `--since` (default 7 days ago) to `--until` (default now). Exit 0 when the window
is complete (reconcile.is_complete): nothing missing, the whole window listed, every listed
item usable; else 1.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard, in_shard, shard_text
from archiver.config.settings import Settings
from archiver.destinations import open_destination
from archiver.destinations.base import Destination
from archiver.destinations.folder import LocalFolder
from archiver.engine.assembly import open_api
from archiver.engine.sync import read_watermark
from archiver.errors import LocalError, UsageError
from archiver.osvi.listing import Filters, Gap, Pages, RetriedListing, walk
from archiver.osvi.reconcile import HELD, NO_OUTCOME, is_complete
from archiver.osvi.times import Span, api_moment, utc_text
from archiver.state.call_records import Found
from archiver.state.database import State

log = logging.getLogger("archiver.engine.check")

DEFAULT_SPAN = timedelta(days=7)  # --since when not given
# How long a call picked after the sync watermark may wait for a sync before it is missing:
# a night and a half, as the watermark alert (prometheus-alerts.yaml).
GRACE = timedelta(hours=36)
SHOWN = 20  # calls of each list in the text output; --json and --ids give them all
NEVER_SEEN = "never_seen"
NOT_SYNCED = "not_synced_yet"
WHY_TEXT = {
    NEVER_SEEN: "never seen",
    NO_OUTCOME: "no outcome (in flight in a run going on, or taken by a run that stopped first)",
}


@dataclass(frozen=True, slots=True)
class Missing:
    """A listed call the archive does not hold, and why."""

    call_id: str
    why: str  # never_seen, failed, no_outcome
    kind: str | None = None  # a failed call's error kind
    message: str | None = None
    picked_at: str | None = None  # UTC, from the listing

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self) -> str:
        if self.why == Status.FAILED:
            return f"failed ({self.kind or 'unknown'}): {self.message or ''}".rstrip(": ")
        return WHY_TEXT.get(self.why, self.why)


@dataclass(frozen=True, slots=True)
class Listed:
    """A listed call shown apart: pending since, or not synced yet, when it was picked."""

    call_id: str
    picked_at: str | None  # UTC, from the listing

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Unlisted:
    """An archived call of the window that the listing does not show."""

    call_id: str
    path: str | None
    started_at: str  # UTC, as the state keeps it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Mark:
    """One state's watermark of the filter set."""

    shard: str | None
    watermark: datetime | None

    def to_json(self) -> dict[str, Any]:
        mark = utc_text(self.watermark) if self.watermark else None
        return {"shard": self.shard, "watermark": mark}


@dataclass
class CheckReport:
    archive: str
    start: datetime
    end: datetime
    filters: str
    outcomes: Counter[str] = field(default_factory=Counter)  # listed calls by what is held
    missing: list[Missing] = field(default_factory=list)
    pending: list[Listed] = field(default_factory=list)
    later: list[Listed] = field(default_factory=list)  # not synced yet
    unusable: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    unlisted: list[Unlisted] | None = field(default_factory=list)  # None: not checked
    unlisted_note: str | None = None  # why unlisted calls were not checked, or only partly
    marks: list[Mark] = field(default_factory=list)
    walked: bool = False

    @property
    def listed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def complete(self) -> bool:
        return is_complete(walked=self.walked, gaps=len(self.gaps),
                           unusable=len(self.unusable), missing=len(self.missing))  # fmt: skip

    @property
    def exit_code(self) -> int:
        return 0 if self.complete else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "window": {"start": utc_text(self.start), "end": utc_text(self.end)},
            "filters": self.filters,
            "listed": self.listed,
            "outcomes": dict(sorted(self.outcomes.items())),
            "missing": [m.to_json() for m in self.missing],
            "pending": [p.to_json() for p in self.pending],
            "not_synced_yet": [p.to_json() for p in self.later],
            "unusable": self.unusable,
            "incomplete_windows": [gap.to_json() for gap in self.gaps],
            "unlisted": None if self.unlisted is None else [u.to_json() for u in self.unlisted],
            "unlisted_note": self.unlisted_note,
            "watermarks": [mark.to_json() for mark in self.marks],
            "complete": self.complete,
            "exit_code": self.exit_code,
        }


def window_of(span: Span) -> tuple[datetime, datetime]:
    """[--since (default 7 days ago), --until (default now)], never past now."""
    start = span.since if span.since is not None else span.now - DEFAULT_SPAN
    end = span.end
    if start > end:
        raise UsageError(f"--since ({utc_text(start)}) is after --until ({utc_text(end)})")
    return start, end


class Archive:
    """The states of an archive (the whole one's, each shard's), opened read-only: which
    holds each call, and what; the watermark that covers each call. `shard`: only that
    shard's calls are checked."""

    def __init__(
        self, states: list[State], filters: Filters, shard: Shard | None = None, overlap: float = 0
    ) -> None:
        self.states = states
        self.shard = shard
        self.marks = [read_watermark(state, filters) for state in states]
        self.overlap = timedelta(seconds=overlap)  # where the next plain sync starts

    def lookup(self, call_ids: list[str]) -> dict[str, Found]:
        """What the archive holds of each call: its best outcome across the states that own
        it (archived over held over failed), absent when none has it."""
        best: dict[str, Found] = {}
        for state in self.states:
            mine = [i for i in call_ids if in_shard(i, state.shard)]
            for call_id, found in state.outcomes(mine).items():
                if call_id not in best or _rank(found) > _rank(best[call_id]):
                    best[call_id] = found
        return best

    def watermark(self, call_id: str) -> datetime | None:
        """The newest watermark among the states that own the call (None: no sync claims
        it)."""
        owned = [m for s, m in zip(self.states, self.marks, strict=True)
                 if m is not None and in_shard(call_id, s.shard)]  # fmt: skip
        return max(owned, default=None)

    def archived_between(self, start: datetime, end: datetime) -> Iterator[Found]:
        for state in self.states:
            yield from state.archived_between(start.timestamp(), end.timestamp())


def _rank(found: Found) -> int:
    status = found.status
    return 3 if status == Status.ARCHIVED else 2 if status in HELD else 1 if status else 0


class _Ids:
    """Every id the walk listed, in 8 bytes each (a million ids: 8 MB), for the unlisted
    calls found at the end. Two ids sharing their first 8 bytes would hide an unlisted one:
    for random UUIDs, never in practice."""

    def __init__(self) -> None:
        self._keys = array("Q")
        self._sorted = True

    def add(self, call_id: str) -> None:
        self._keys.append(_key(call_id))
        self._sorted = False

    def __contains__(self, call_id: str) -> bool:
        if not self._sorted:
            self._keys = array("Q", sorted(self._keys))
            self._sorted = True
        key = _key(call_id)
        at = bisect.bisect_left(self._keys, key)
        return at < len(self._keys) and self._keys[at] == key


def _key(call_id: str) -> int:
    return int(call_id.replace("-", "")[:16], 16)


async def reconcile(
    pages: Pages, archive: Archive, filters: Filters, report: CheckReport, now: datetime
) -> CheckReport:
    """Walk the report's window and hold every listed call against the archive."""
    listed = _Ids()
    candidates: dict[str, Unlisted] = {}
    async for step in walk(pages, filters, report.start, report.end):
        report.unusable += step.unusable
        gap = step.window.gap()
        if gap is not None:
            report.gaps.append(gap)
        mine = [item for item in step.calls if in_shard(item["call_id"], archive.shard)]
        found = archive.lookup([item["call_id"] for item in mine])
        for item in mine:
            _hold(report, archive, item, found.get(item["call_id"]), now)
        for item in step.calls:
            listed.add(item["call_id"])
        if report.unlisted is not None and gap is None:
            for one in archive.archived_between(step.window.start, step.window.end):
                if one.started_at is not None:
                    at = utc_text(datetime.fromtimestamp(one.started_at, UTC))
                    candidates[one.call_id] = Unlisted(one.call_id, one.path, at)
    report.walked = True
    if report.unlisted is not None:  # listed in any window of the walk: not unlisted
        report.unlisted = [one for key, one in candidates.items() if key not in listed]
    return report


def _hold(
    report: CheckReport, archive: Archive, item: dict[str, Any], found: Found | None, now: datetime
) -> None:
    call_id = item["call_id"]
    picked = api_moment(item.get("call_picked_at"))
    picked_at = utc_text(picked) if picked else None
    status = found.status if found is not None else None
    if status in HELD:
        report.outcomes[str(status)] += 1
        if status == Status.PENDING:
            report.pending.append(Listed(call_id, picked_at))
        return
    mark = archive.watermark(call_id)
    if picked and mark and picked > mark - archive.overlap and now - picked < GRACE:
        report.outcomes[NOT_SYNCED] += 1  # the next sync's: not missing
        report.later.append(Listed(call_id, picked_at))
        return
    if found is None:
        report.outcomes[NEVER_SEEN] += 1
        report.missing.append(Missing(call_id, NEVER_SEEN, picked_at=picked_at))
    elif status == Status.FAILED:
        report.outcomes[Status.FAILED] += 1
        report.missing.append(
            Missing(call_id, Status.FAILED, found.error_kind, found.error_message, picked_at)
        )
    else:
        report.outcomes[NO_OUTCOME] += 1
        report.missing.append(Missing(call_id, NO_OUTCOME, picked_at=picked_at))


async def check(
    settings: Settings,
    filters: Filters,
    span: Span,
    shard: Shard | None,
) -> CheckReport:
    """The check of one window: every state read-only, the listing walked as sync walks it."""
    now = span.now
    start, end = window_of(span)
    destination = open_destination(settings)
    if isinstance(destination, LocalFolder) and not destination.root.is_dir():
        raise LocalError(f"{destination.root} is not a folder: no archive there")
    with _opened(destination, shard) as states:
        if not states:  # checked all the same: every listed call is missing, and said so
            log.warning(
                "%s holds no osvi-archiver state: nothing is archived there",
                destination.where,
                extra={"event": "check_no_state"},
            )
        archive = Archive(states, filters, shard, settings.sync_overlap)
        report = CheckReport(destination.where, start, end, filters.text())
        report.marks = [Mark(shard_text(s.shard) or None, m)
                        for s, m in zip(states, archive.marks, strict=True)]  # fmt: skip
        report.unlisted_note = unlisted_scope(filters, states)
        if report.unlisted_note is not None:
            report.unlisted = None
        else:
            report.unlisted_note = UNLISTED_PARTLY
        async with open_api(settings) as api:
            pages = RetriedListing(api, settings.max_attempts)
            return await reconcile(pages, archive, filters, report, now)


@contextlib.contextmanager
def _opened(destination: Destination, shard: Shard | None) -> Iterator[list[State]]:
    """Every state of the archive (or only that shard's), read-only; none yet: empty."""
    chosen = [shard] if shard is not None else destination.states()
    with contextlib.ExitStack() as stack:
        states = [stack.enter_context(destination.viewing(one)) for one in chosen]
        yield [state for state in states if state is not None]


def unlisted_scope(filters: Filters, states: list[State]) -> str | None:
    """Why unlisted calls cannot be checked for this filter set and archive; None: they can."""
    params = filters.params()
    if set(params) - {"status"}:
        return "not checked: the listing is filtered by more than --status"
    if "status" in params and "picked" not in params["status"].split(","):
        return "not checked: the listing does not list picked calls (--status)"
    if any(not state.keeps_call_times for state in states):
        return (
            "not checked: the archive's state does not keep call times yet (a `run` or "
            "`sync` with this version adds them)"
        )
    return None


UNLISTED_PARTLY = "checked for the calls whose time the state keeps (archived by a sync)"


def render_text(report: CheckReport) -> str:
    """The block a person reads (times in UTC)."""
    o = report.outcomes
    lines = [
        "── osvi-archiver check ──",
        f"archive           {report.archive}",
        f"window            {utc_text(report.start)} .. {utc_text(report.end)}",
        f"filters           {report.filters}",
        f"listed            {report.listed:,} calls{_unusable(report)}",
        f"archived          {o[Status.ARCHIVED]:,}",
        f"pending           {o[Status.PENDING]:,}",
        *[f"  {p.call_id}  pending since {p.picked_at or '?'}" for p in report.pending[:SHOWN]],
        f"not available     {o[Status.NOT_AVAILABLE]:,}",
        f"not synced yet    {o[NOT_SYNCED]:,}"
        + (" (the next sync's: after its watermark, less than 36 h ago)" if o[NOT_SYNCED] else ""),
        f"missing           {len(report.missing):,}"
        + (f" ({_kinds(o)})" if report.missing else ""),
    ]
    lines += [f"  {missing.call_id}  {missing.text()}" for missing in report.missing[:SHOWN]]
    if len(report.missing) > SHOWN:
        lines.append(f"  … and {len(report.missing) - SHOWN:,} more (--ids or --json)")
    if report.unlisted is None:
        lines.append(f"unlisted          {report.unlisted_note}")
    else:
        lines.append(f"unlisted          {len(report.unlisted):,} (archived, not in the listing)")
        lines += [f"  {u.call_id}  {u.path or ''} (call at {u.started_at})"
                  for u in report.unlisted[:SHOWN]]  # fmt: skip
    lines += [f"  could not list {gap.text()}" for gap in report.gaps]
    lines += _mark_lines(report)
    lines.append(f"result            {_verdict(report)}")
    return "\n".join(lines)


def _kinds(o: Counter[str]) -> str:
    said = [(NEVER_SEEN, "never seen"), (Status.FAILED, "failed"), (NO_OUTCOME, "no outcome")]
    return ", ".join(f"{o[k]:,} {text}" for k, text in said if o[k])


def _unusable(report: CheckReport) -> str:
    count = len(report.unusable)
    return f" (and {count:,} items with no usable call_id)" if count else ""


def _mark_lines(report: CheckReport) -> list[str]:
    lines = []
    for mark in report.marks:
        whose = f" (shard {mark.shard})" if mark.shard else ""
        if mark.watermark is None:
            said = "none: no sync with these filters; every call not held is missing"
        else:
            said = utc_text(mark.watermark)
        lines.append(f"sync watermark    {said}{whose}")
    return lines


def _verdict(report: CheckReport) -> str:
    if report.complete:
        later = f" ({len(report.later):,} are the next sync's)" if report.later else ""
        return f"complete: nothing missing of the {report.listed:,} listed calls{later}"
    said = []
    if report.missing:
        said.append(f"{len(report.missing):,} missing (`check ... --ids | run --out ... -`)")
    if report.gaps:
        said.append(f"{len(report.gaps):,} windows could not be listed")
    if report.unusable:
        said.append(f"{len(report.unusable):,} listed items had no usable call_id")
    if not report.walked:
        said.append("the listing was not walked to its end")
    return "NOT complete: " + "; ".join(said)
