"""Walking `GET /v1/calls` without missing or repeating a call, and without trusting any
count the API gives (osvi-api/README.md; issue 20).

The listing is newest first and page numbers shift while calls arrive, so a time range is
walked as closed windows on `call_picked_at`, oldest first. Nothing about the listing's `meta`
is documented beyond its field names, and every field may be null, count the page alone or be
inflated: its numbers are hints; the pages decide.

- A full page (as long as the page size asked) means "maybe more": a window whose first page
  is full is split, in as many pieces as `total_count` hints (2 to MAX_PIECES), down to one
  second, below which it is paged with de-duplication.
- A short page ends a window, unless the hints say there is more: then it is paged on, up to
  an empty page or one that brings no new id (an API that ignores `page`).
- A full page of calls already seen means the window cannot be walked past it: the window is
  tried once more from its first page (a glitch heals), then yielded with its `problem`.
- A walk has a bound on its requests that grows with the distinct calls it finds
  (BUDGET_BASE + BUDGET_FACTOR x levels of splitting x pages of calls): a listing that keeps
  answering full pages with the same calls is given up, the rest of the range as one window
  with its problem.

A window with a problem is incomplete: its calls found are archived, `sync` never moves its
watermark over it, and the run exits 1 naming it. When the hints and the pages disagree, a
warning gives the numbers (the first in full, then how many more at the end of the walk).
Windows share their boundary instant, so a call exactly on it is listed twice: the consumer
drops it by the previous window's ids.

Each page is asked for through `RetriedListing`: retried like a call's requests, and a page
that cannot be had ends the run (the walk cannot go on past it): a refusal of the query is a
usage error (exit 2: a wrong --agent, say), anything else exit 69. An item whose `call_id` is
not a UUID is never used: the windows carry it as `unusable`, for the run to report.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from archiver.archive.ids import canonical_uuid
from archiver.errors import ApiRejected, AuthError, CallError, Unavailable, UsageError
from archiver.net.retrying import call_retrying
from archiver.osvi.responses import ListPage
from archiver.osvi.times import api_moment, api_time, utc_text

log = logging.getLogger("archiver.osvi.listing")

PER_PAGE = 100
_MIN_SPAN = timedelta(seconds=1)
MAX_PIECES = 16  # a full window is split into this many pieces at most
MAX_LEAF_PAGES = 1_000  # pages of a one-second window: 100,000 calls in a second
BUDGET_BASE = 64  # requests a walk may make before it has found a call
BUDGET_FACTOR = 10  # more per level of splitting, for each page of distinct calls found


@dataclass(frozen=True)
class Filters:
    """The listing's filters besides time, as the API names them."""

    status: tuple[str, ...] = ()
    agent_uuid: str | None = None
    campaign_id: int | None = None
    campaign_upload_id: int | None = None
    phone_number: str | None = None
    call_type: str | None = None

    def params(self) -> dict[str, str]:
        params = {"status": ",".join(sorted(set(self.status)))} if self.status else {}
        for name in (
            "agent_uuid",
            "campaign_id",
            "campaign_upload_id",
            "phone_number",
            "call_type",
        ):
            value = getattr(self, name)
            if value is not None:
                params[name] = str(value)
        return params

    def text(self) -> str:
        """The filter set as a person reads it, the same for the same set (`status=picked`,
        `agent_uuid=..., status=busy,picked`); `none` for no filter at all."""
        return params_text(self.params())


def params_text(params: Mapping[str, object]) -> str:
    """Filters.text of the listing's parameters."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "none"


class Pages(Protocol):
    """What the walk asks pages of (OsviApi, or RetriedListing around it)."""

    async def list_page(self, params: Mapping[str, str]) -> ListPage: ...


class RetriedListing:
    """Pages of `GET /v1/calls` for a run: each retried like a call's requests (backoff,
    Retry-After, outages at no cost), then, when it still cannot be had, a run-level error."""

    def __init__(
        self,
        api: Pages,
        max_attempts: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._max_attempts = max_attempts
        self._sleep = sleep

    async def list_page(self, params: Mapping[str, str]) -> ListPage:
        try:
            async for attempt in call_retrying(self._max_attempts, self._sleep):
                with attempt:
                    return await self._api.list_page(params)
        except ApiRejected as exc:
            if exc.status == 403:
                raise AuthError(f"the API refused the listing to this token ({exc})") from exc
            raise UsageError(
                f"the API refused the listing ({exc}); check the filters (--agent, --status, "
                "--campaign, ...)"
            ) from exc
        except CallError as exc:
            raise Unavailable(f"the API's listing could not be read: {exc}") from exc
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


@dataclass
class Window:
    """[start, end] on call_picked_at, both inclusive, and the calls listed in it (with the
    call_id values of the items that could not be used). `problem`: why the window could not
    be listed completely (None: it was)."""

    start: datetime
    end: datetime
    calls: list[dict[str, Any]] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None

    def span(self) -> str:
        """The window as a person reads it (UTC, to the second)."""
        return f"{utc_text(self.start)} .. {utc_text(self.end)}"

    def gap(self) -> Gap | None:
        """The window as a gap in the listing, when it could not be listed completely."""
        return None if self.problem is None else Gap(self.start, self.end, self.problem)


@dataclass(frozen=True, slots=True)
class Gap:
    """A window the listing could not be walked through completely, and why."""

    start: datetime
    end: datetime
    problem: str

    def to_json(self) -> dict[str, str]:
        return {"start": utc_text(self.start), "end": utc_text(self.end), "problem": self.problem}

    def text(self) -> str:
        return f"{utc_text(self.start)} .. {utc_text(self.end)}: {self.problem}"


def page_size(page: ListPage) -> int:
    """The size of a full page: what was asked, or less when the API says it pages by less."""
    if page.per_page is not None and 1 <= page.per_page < PER_PAGE:
        return page.per_page
    return PER_PAGE


def is_full(page: ListPage) -> bool:
    """A full page means "maybe more", whatever the meta says."""
    return page.size >= page_size(page)


def says_more(page: ListPage, number: int, seen: int) -> bool:
    """Whether paging on after page `number` (with `seen` distinct items so far) may find
    more: a full page, or a short one whose hints claim more pages or calls."""
    if page.size == 0:
        return False
    if is_full(page):
        return True
    more_pages = page.total_pages is not None and page.total_pages > number
    more_calls = page.total_count is not None and page.total_count > seen
    return more_pages or more_calls


def page_verdict(listed: ListPage, number: int, new: int, seen: int) -> tuple[bool, str | None]:
    """After page `number`, which brought `new` items not seen before (`seen` in all): whether
    to ask the next page, and why the paging cannot go on although it should (None: it need
    not). A page of only items seen already ends the paging (an API that ignores `page`);
    when it was full, what comes after it cannot be reached."""
    if number > 1 and listed.size and not new:
        if is_full(listed):
            return False, (
                f"page {number} held only calls listed already (an API that ignores `page`, "
                "or pages that repeat): the calls after them cannot be reached"
            )
        return False, None
    return says_more(listed, number, seen), None


def _key(item: dict[str, Any]) -> str:
    return str(item["call_id"])


class _OverBudget(Exception):
    """The walk spent its bound on requests."""


class _Walk:
    """One walk of [start, end]: its requests and their bound, and what the hints said."""

    def __init__(
        self,
        api: Pages,
        base: Mapping[str, str],
        start: datetime,
        end: datetime,
        on_total: Callable[[int], None] | None,
    ) -> None:
        self._api = api
        self._base = base
        self._on_total = on_total
        self._levels = max(1, math.ceil(math.log2(max((end - start) / _MIN_SPAN, 2.0))))
        self.requests = 0
        self._recent: dict[str, None] = {}  # the distinct ids found lately (bounded)
        self.found = 0  # distinct calls found so far
        self._root: ListPage | None = None
        self.disagreements = 0

    def allowed(self) -> int:
        """The requests the walk may have made by now: it grows with the calls found."""
        return BUDGET_BASE + BUDGET_FACTOR * self._levels * (self.found // PER_PAGE + 1)

    async def page(self, start: datetime, end: datetime, number: int) -> ListPage:
        if self.requests >= self.allowed():
            raise _OverBudget(
                f"{self.requests} listing requests brought only {self.found} distinct calls"
            )
        self.requests += 1
        params = {**self._base, "start_date": api_time(start), "end_date": api_time(end),
                  "page": str(number), "per_page": str(PER_PAGE)}  # fmt: skip
        listed = await self._api.list_page(params)
        if self._root is None:
            self._root = listed
            if self._on_total is not None:  # a display's total only (progress, ETA): the
                # hint of a full first page, which may lie; a short page's own count
                hinted = listed.total_count if is_full(listed) else None
                self._on_total(hinted if hinted is not None else listed.size)
        return listed

    async def node(self, start: datetime, end: datetime) -> AsyncIterator[Window]:
        """The windows of [start, end], oldest first."""
        first = await self.page(start, end, 1)
        if is_full(first) and end - start > _MIN_SPAN:
            for low, high in pieces(start, end, _pieces_for(first)):
                async for window in self.node(low, high):
                    yield window
            return
        window = await self._pages(start, end, first)
        if not window.complete:  # once more from its first page: a glitch heals
            window = await self._pages(start, end, await self.page(start, end, 1))
        yield window

    async def _pages(self, start: datetime, end: datetime, first: ListPage) -> Window:
        """Page through one window, de-duplicating, until the pages say it is done."""
        window = Window(start, end)
        seen: set[str] = set()
        listed, number = first, 1
        while True:
            new = [item for item in listed.items if _key(item) not in seen]
            bad = [value for value in listed.unusable if f"?{value}" not in seen]
            seen.update(_key(item) for item in new)
            seen.update(f"?{value}" for value in bad)
            self._count(new)  # as the pages come: a burst paged at once grows the bound too
            window.calls += new
            window.unusable += bad
            more, window.problem = page_verdict(listed, number, len(new) + len(bad), len(seen))
            if not more:
                break
            if number >= MAX_LEAF_PAGES:
                window.problem = f"more than {MAX_LEAF_PAGES} pages of calls in one window"
                break
            number += 1
            listed = await self.page(start, end, number)
        self._compare(window, first, len(seen))
        return window

    def _count(self, calls: list[dict[str, Any]]) -> None:
        """Calls not found lately: what the bound on requests grows with."""
        for item in calls:
            key = _key(item)
            if key in self._recent:
                continue
            self._recent[key] = None
            self.found += 1
            if len(self._recent) > 20 * PER_PAGE:
                del self._recent[next(iter(self._recent))]

    def _compare(self, window: Window, first: ListPage, found: int) -> None:
        """Warn when the first page's hints disagree with what the pages held."""
        said = first.total_count
        if said is None and first.total_pages is not None:
            pages = -(-found // page_size(first))
            if first.total_pages == pages or (found == 0 and first.total_pages <= 1):
                return
            self._disagree(window, f"total_pages {first.total_pages}", found)
        elif said is not None and said != found:
            self._disagree(window, f"total_count {said}", found)

    def _disagree(self, window: Window, said: str, found: int) -> None:
        self.disagreements += 1
        if self.disagreements == 1:
            log.warning(
                "the listing's meta and its pages disagree for %s: the meta said %s, the "
                "pages held %d calls; the pages are believed",
                window.span(),
                said,
                found,
                extra={"event": "listing_hints_disagree", "said": said, "found": found},
            )

    def finish(self) -> None:
        """At the end of the walk: the root's hint against every distinct call found, and how
        many windows' hints disagreed."""
        said = self._root.total_count if self._root and is_full(self._root) else None
        if said is not None and said != self.found:
            self.disagreements += 1
            log.warning(
                "the listing's meta said %d calls for the whole walk; its pages held %d",
                said,
                self.found,
                extra={"event": "listing_hints_disagree", "said": said, "found": self.found},
            )
        if self.disagreements > 1:
            log.warning(
                "the listing's meta disagreed with its pages %d times in this walk (the first "
                "is above); the pages were believed",
                self.disagreements,
                extra={"event": "listing_hints_disagree", "times": self.disagreements},
            )


def _pieces_for(first: ListPage) -> int:
    """How many pieces a full window is split into: as total_count hints (about 70 calls a
    piece), 2 to MAX_PIECES; 2 without a hint."""
    hint = first.total_count
    if hint is None or hint <= PER_PAGE:
        return 2
    return max(2, min(MAX_PIECES, math.ceil(hint / (0.7 * PER_PAGE))))


def pieces(start: datetime, end: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """[start, end] cut into `count` closed windows that share their boundaries (no piece
    shorter than a second, unless the whole is shorter than two)."""
    count = max(2, min(count, int((end - start) / _MIN_SPAN)))
    bounds = [start + (end - start) * n / count for n in range(count)] + [end]
    return list(itertools.pairwise(bounds))


async def windows(
    api: Pages,
    filters: Filters,
    start: datetime,
    end: datetime,
    on_total: Callable[[int], None] | None = None,
) -> AsyncIterator[Window]:
    """Every window of [start, end] with its calls, oldest window first; when the walk runs
    out of its bound on requests, the rest of the range as one window with its problem.
    `on_total` hears how many calls the first page says there are (progress and ETA)."""
    if start > end:
        return
    walk = _Walk(api, filters.params(), start, end, on_total)
    done_to = start
    try:
        async for window in walk.node(start, end):
            done_to = window.end
            yield window
    except _OverBudget as exc:
        yield Window(done_to, end, problem=f"{exc}: the listing cannot be walked reliably")
    walk.finish()


@dataclass(frozen=True)
class Step:
    """One window of a walk: its calls (and unusable items) less those the window before it
    listed (their shared boundary)."""

    number: int  # 0 for the oldest window of the walk
    window: Window
    calls: list[dict[str, Any]]
    unusable: list[str]


async def walk(
    api: Pages,
    filters: Filters,
    start: datetime,
    end: datetime,
    on_total: Callable[[int], None] | None = None,
) -> AsyncIterator[Step]:
    """The listing of [start, end] window by window, each call once: what `list`, `sync`,
    `sync --dry-run` and `check` all read."""
    previous: Window | None = None
    number = 0
    async for window in windows(api, filters, start, end, on_total):
        before = set(previous.unusable) if previous else set()
        unusable = [value for value in window.unusable if value not in before]
        yield Step(number, window, without_repeats(previous, window), unusable)
        previous, number = window, number + 1


def without_repeats(previous: Window | None, window: Window) -> list[dict[str, Any]]:
    """The window's calls less those the previous window listed (its shared boundary)."""
    if previous is None:
        return window.calls
    before = {item["call_id"] for item in previous.calls}
    return [item for item in window.calls if item["call_id"] not in before]


def layout_fields_of(call: Mapping[str, Any]) -> dict[str, str]:
    """Layout values a listing item (or call detail) gives: the date of call_picked_at in the
    offset the API wrote it in (IST), and the agent. Only values safe in a path are kept."""
    fields: dict[str, str] = {}
    picked = api_moment(call.get("call_picked_at")) or api_moment(call.get("created_at"))
    if picked is not None:
        fields |= {
            "yyyy": f"{picked.year:04d}",
            "mm": f"{picked.month:02d}",
            "dd": f"{picked.day:02d}",
        }
    agent = canonical_uuid(str(call.get("agent_uuid") or ""))
    if agent is not None:
        fields["agent_uuid"] = agent
    return fields


def started_at_of(call: Mapping[str, Any]) -> float | None:
    """call_picked_at, else created_at, as epoch seconds: the age §5.4 measures."""
    moment = api_moment(call.get("call_picked_at")) or api_moment(call.get("created_at"))
    return moment.timestamp() if moment else None


CALL_STATUSES = ("picked", "not_picked", "failed", "busy", "voicemail", "in_progress")
# Never answered: no recording will ever come (a voicemail may have one: it is asked).
UNANSWERED = frozenset({"not_picked", "busy", "failed"})


def unanswered(call: Mapping[str, Any]) -> str | None:
    """The listing's status of a call that was never answered (so has no recording), else
    None (answered, unknown, null or not a string: asked of the API as usual)."""
    status = call.get("status")
    return status if isinstance(status, str) and status in UNANSWERED else None


# The documented call fields, in order: the CSV header of `osvi-archiver list`.
CALL_FIELDS = (
    "call_id", "agent_uuid", "agent_name", "phone_number", "from_number", "status",
    "call_type", "duration_seconds", "call_ended_by", "call_ended_reason", "campaign_id",
    "campaign_upload_id", "tag", "created_at", "call_picked_at",
)  # fmt: skip
