"""`osvi-archiver check`: the archive reconciled with the API's listing of a window (issue 20).

`rclone check` compares two remotes; here the API's listing is the source of truth. The window
is walked exactly as `sync` walks it (listing.walk: the same code, the same distrust of every
count the API gives), nothing else is asked of the API (no recording URL), and each listed
call is looked up in the archive's state, read-only: no lock, nothing written, beside a
running nightly, on a folder or a bucket (whose state is its snapshot). A folder shared by
shards is looked up in the state that owns each call.

- missing: listed calls the archive does not hold as archived, pending or not available
  (reconcile.HELD), with why: never seen, failed (its kind and message), or taken by a run that
  stopped before the call had an outcome;
- unlisted: archived calls whose call time falls in the window and that the listing does not
  show: reported, not an error (a call archived by `run` with another status, or one the API
  no longer lists). Only without filters besides --status, and only for calls whose time the
  state keeps (recorded since schema 5);
- the counts per outcome, the filter set's watermark, and whether it covers the window.

The window: `--since` (default 7 days ago) to `--until`, by default the filter set's sync
watermark when there is one after --since (the span a sync has claimed complete), else now.
Exit 0 when nothing is missing and the whole window was listed; 1 when a call is missing, a
window could not be listed, or a listed item had no usable call_id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.connect import open_api
from archiver.destination import Destination, LocalFolder, open_destination
from archiver.errors import LocalError
from archiver.listing import Filters, Pages, RetriedListing, walk
from archiver.reconcile import HELD, Gap
from archiver.records import Found
from archiver.settings import Settings
from archiver.shard import Shard, in_shard, shard_text
from archiver.state import State
from archiver.status import Status
from archiver.sync import read_watermark
from archiver.times import api_moment, utc_text

log = logging.getLogger("archiver.check")

DEFAULT_SPAN = timedelta(days=7)  # --since when not given
SHOWN = 20  # missing and unlisted calls in the text output; --json and --ids give them all
NEVER_SEEN = "never_seen"
NO_OUTCOME = "no_outcome"  # taken by a run that stopped before the call had an outcome


@dataclass(frozen=True, slots=True)
class Missing:
    """A listed call the archive does not hold, and why (or holds as pending, and since when)."""

    call_id: str
    why: str  # never_seen, failed, no_outcome (or pending: held, listed apart)
    kind: str | None = None  # a failed call's error kind
    message: str | None = None
    picked_at: str | None = None  # as the listing gives it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def text(self) -> str:
        if self.why == Status.FAILED:
            return f"failed ({self.kind or 'unknown'}): {self.message or ''}".rstrip(": ")
        return WHY_TEXT.get(self.why, self.why)


WHY_TEXT = {
    NEVER_SEEN: "never seen",
    NO_OUTCOME: "taken by a run that stopped before it had an outcome",
}


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
    """One state's watermark of the filter set, and whether it covers the window."""

    shard: str | None
    watermark: datetime | None
    covers: bool

    def to_json(self) -> dict[str, Any]:
        mark = utc_text(self.watermark) if self.watermark else None
        return {"shard": self.shard, "watermark": mark, "covers_window": self.covers}


@dataclass
class CheckReport:
    archive: str
    start: datetime
    end: datetime
    until_from: str  # --until, the sync watermark, or now
    filters: str
    outcomes: Counter[str] = field(default_factory=Counter)  # listed calls by what is held
    missing: list[Missing] = field(default_factory=list)
    pending: list[Missing] = field(default_factory=list)  # held, asked again by every run
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
    def covered(self) -> bool:
        return bool(self.marks) and all(mark.covers for mark in self.marks)

    @property
    def exit_code(self) -> int:
        return 1 if self.missing or self.gaps or self.unusable or not self.walked else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "archive": self.archive,
            "window": {
                "start": utc_text(self.start),
                "end": utc_text(self.end),
                "until": self.until_from,
            },
            "filters": self.filters,
            "listed": self.listed,
            "outcomes": dict(sorted(self.outcomes.items())),
            "missing": [m.to_json() for m in self.missing],
            "pending": [m.to_json() for m in self.pending],
            "unusable": self.unusable,
            "incomplete_windows": [gap.to_json() for gap in self.gaps],
            "unlisted": None if self.unlisted is None else [u.to_json() for u in self.unlisted],
            "unlisted_note": self.unlisted_note,
            "watermarks": [mark.to_json() for mark in self.marks],
            "covered_by_watermark": self.covered,
            "exit_code": self.exit_code,
        }


def default_window(
    marks: list[datetime | None], since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime, str]:
    """The window checked and where its end came from: --until; else the filter set's sync
    watermark (the oldest of the states'), when every state has one after the start; else
    now."""
    start = since if since is not None else now - DEFAULT_SPAN
    if until is not None:
        return start, min(until, now), "--until"
    known = [mark for mark in marks if mark is not None]
    if known and len(known) == len(marks) and min(known) > start:
        return start, min(min(known), now), "the sync watermark"
    return start, now, "now"


class Archive:
    """The states of an archive (the whole one's, each shard's), opened read-only: which
    holds each call, and what. `shard`: only that shard's calls are checked."""

    def __init__(self, states: list[State], shard: Shard | None = None) -> None:
        self.states = states
        self.shard = shard

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

    def archived_between(self, start: datetime, end: datetime) -> Iterator[Found]:
        for state in self.states:
            yield from state.archived_between(start.timestamp(), end.timestamp())


def _rank(found: Found) -> int:
    status = found.status
    return 3 if status == Status.ARCHIVED else 2 if status in HELD else 1 if status else 0


async def reconcile(
    pages: Pages,
    archive: Archive,
    filters: Filters,
    report: CheckReport,
) -> CheckReport:
    """Walk the report's window and hold every listed call against the archive."""
    unlisted_checked = report.unlisted is not None
    async for step in walk(pages, filters, report.start, report.end):
        window = step.window
        report.unusable += window.unusable
        if not window.complete:
            report.gaps.append(Gap(window.start, window.end, window.problem or "incomplete"))
        mine = [item for item in step.calls if in_shard(item["call_id"], archive.shard)]
        found = archive.lookup([item["call_id"] for item in mine])
        for item in mine:
            _hold(report, item, found.get(item["call_id"]))
        if unlisted_checked and window.complete and report.unlisted is not None:
            shown = {item["call_id"] for item in window.calls}
            report.unlisted += [
                Unlisted(
                    one.call_id, one.path, utc_text(datetime.fromtimestamp(one.started_at, UTC))
                )
                for one in archive.archived_between(window.start, window.end)
                if one.call_id not in shown and one.started_at is not None
            ]
    report.walked = True
    if report.unlisted is not None:  # a call on a shared boundary belongs to both windows
        report.unlisted = list({u.call_id: u for u in report.unlisted}.values())
    return report


def _hold(report: CheckReport, item: dict[str, Any], found: Found | None) -> None:
    picked = item.get("call_picked_at")
    picked_at = picked if isinstance(picked, str) and api_moment(picked) else None
    call_id = item["call_id"]
    if found is None:
        report.outcomes[NEVER_SEEN] += 1
        report.missing.append(Missing(call_id, NEVER_SEEN, picked_at=picked_at))
    elif found.status in HELD:
        report.outcomes[str(found.status)] += 1
        if found.status == Status.PENDING:
            report.pending.append(Missing(call_id, Status.PENDING, picked_at=picked_at))
    elif found.status == Status.FAILED:
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
    window: tuple[datetime | None, datetime | None, datetime],
    shard: Shard | None,
) -> CheckReport:
    """The check of one window: every state read-only, the listing walked as sync walks it."""
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
        marks = [read_watermark(state, filters) for state in states]
        start, end, until_from = default_window(marks, *window)
        report = CheckReport(destination.where, start, end, until_from, filters.text())
        report.marks = [
            Mark(shard_text(state.shard) or None, mark, mark is not None and mark >= end)
            for state, mark in zip(states, marks, strict=True)
        ]
        report.unlisted_note = unlisted_scope(filters, states)
        if report.unlisted_note is not None:
            report.unlisted = None
        else:
            report.unlisted_note = UNLISTED_PARTLY
        archive = Archive(states, shard)
        async with open_api(settings) as api:
            pages = RetriedListing(api, settings.max_attempts)
            return await reconcile(pages, archive, filters, report)


@contextlib.contextmanager
def _opened(destination: Destination, shard: Shard | None) -> Iterator[list[State]]:
    """Every state of the archive (or only that shard's), read-only; none yet: empty."""
    chosen = [shard] if shard is not None else destination.states()
    with contextlib.ExitStack() as stack:
        states = [stack.enter_context(destination.viewing(one)) for one in chosen]
        yield [state for state in states if state is not None]


def unlisted_scope(filters: Filters, states: list[State]) -> str | None:
    """Why unlisted calls cannot be checked for this filter set and archive; None: they can."""
    if {k for k in filters.params() if k != "status"}:
        return "not checked: the listing is filtered by more than --status"
    if any(not state.keeps_call_times for state in states):
        return (
            "not checked: the archive's state does not keep call times yet (a `run` or "
            "`sync` with this version adds them)"
        )
    return None


UNLISTED_PARTLY = (
    "only calls archived since the state keeps call times (osvi-archiver 2026-12) are checked"
)


def render_text(report: CheckReport) -> str:
    """The block a person reads."""
    o = report.outcomes
    lines = [
        "── osvi-archiver check ──",
        f"archive           {report.archive}",
        f"window            {utc_text(report.start)} .. {utc_text(report.end)} "
        f"(until: {report.until_from})",
        f"filters           {report.filters}",
        f"listed            {report.listed:,} calls{_unusable(report)}",
        f"archived          {o[Status.ARCHIVED]:,}",
        f"pending           {o[Status.PENDING]:,}",
        *[f"  {p.call_id}  pending since {p.picked_at or '?'}" for p in report.pending[:SHOWN]],
        f"not available     {o[Status.NOT_AVAILABLE]:,}",
        f"failed            {o[Status.FAILED]:,}",
        f"never seen        {o[NEVER_SEEN]:,}",
    ]
    if o[NO_OUTCOME]:
        lines.append(f"no outcome yet    {o[NO_OUTCOME]:,}")
    lines.append(f"missing           {len(report.missing):,}")
    for missing in report.missing[:SHOWN]:
        lines.append(f"  {missing.call_id}  {missing.text()}")
    if len(report.missing) > SHOWN:
        lines.append(f"  … and {len(report.missing) - SHOWN:,} more (--ids or --json)")
    if report.unlisted is None:
        lines.append(f"unlisted          {report.unlisted_note}")
    else:
        lines.append(f"unlisted          {len(report.unlisted):,} (archived, not in the listing)")
        for one in report.unlisted[:SHOWN]:
            lines.append(f"  {one.call_id}  {one.path or ''} (call at {one.started_at})")
    lines += [f"  could not list {gap.text()}" for gap in report.gaps]
    lines += _mark_lines(report)
    lines.append(f"result            {_verdict(report)}")
    return "\n".join(lines)


def _unusable(report: CheckReport) -> str:
    count = len(report.unusable)
    return f" (and {count:,} items with no usable call_id)" if count else ""


def _mark_lines(report: CheckReport) -> list[str]:
    lines = []
    for mark in report.marks:
        if mark.watermark is None:
            said = "none: no sync with these filters yet"
        elif mark.covers:
            said = f"{utc_text(mark.watermark)}, covers the window"
        else:
            said = f"{utc_text(mark.watermark)}: the window ends after it (not synced yet)"
        lines.append(f"sync watermark    {said}" + (f" (shard {mark.shard})" if mark.shard else ""))
    return lines


def _verdict(report: CheckReport) -> str:
    if report.exit_code == 0:
        return f"complete: every one of the {report.listed:,} listed calls is held"
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
