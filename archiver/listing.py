"""Walking `GET /v1/calls` without missing or repeating a call (osvi-api/README.md).

The listing is newest first and page numbers shift while calls arrive, so a time range is
walked as closed windows on `call_picked_at`, each small enough to come back in one page: a
window with more calls than a page is split in two, down to one second, below which it is
paged with de-duplication. Windows come out oldest first and share their boundary instant, so
a call exactly on it is listed twice: the consumer drops it by the previous window's ids.

Each page is asked for through `RetriedListing`: retried like a call's requests, and a page
that cannot be had ends the run (the walk cannot go on past it): a refusal of the query is a
usage error (exit 2: a wrong --agent, say), anything else exit 69. An item whose `call_id` is
not a UUID is never used: the windows carry it as `unusable`, for the run to report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from archiver.answers import ListPage
from archiver.errors import ApiRejected, AuthError, CallError, Unavailable, UsageError
from archiver.ids import canonical_uuid
from archiver.retrying import call_retrying
from archiver.times import api_time

log = logging.getLogger("archiver.listing")

PER_PAGE = 100
_MIN_SPAN = timedelta(seconds=1)


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
        params = {"status": ",".join(self.status)} if self.status else {}
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
    call_id values of the items that could not be used)."""

    start: datetime
    end: datetime
    calls: list[dict[str, Any]] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)


async def windows(
    api: Pages,
    filters: Filters,
    start: datetime,
    end: datetime,
    on_total: Callable[[int], None] | None = None,
) -> AsyncIterator[Window]:
    """Every window of [start, end] with its calls, oldest window first. `on_total` hears
    the listing's `meta.total_count` for the whole of [start, end] (progress and ETA)."""
    if start > end:
        return
    async for window in _walk(api, filters.params(), start, end, on_total):
        yield window


async def _walk(
    api: Pages,
    base: Mapping[str, str],
    start: datetime,
    end: datetime,
    on_total: Callable[[int], None] | None = None,
) -> AsyncIterator[Window]:
    params = {**base, "start_date": api_time(start), "end_date": api_time(end)}
    first = await api.list_page({**params, "page": "1", "per_page": str(PER_PAGE)})
    if on_total is not None:
        on_total(first.total_count)
    if first.total_count <= first.size:
        yield Window(start, end, first.items, first.unusable)
    elif end - start > _MIN_SPAN:
        middle = start + (end - start) / 2
        async for window in _walk(api, base, start, middle):
            yield window
        async for window in _walk(api, base, middle, end):
            yield window
    else:
        yield await _all_pages(api, params, Window(start, end), first)


async def _all_pages(
    api: Pages, params: Mapping[str, str], window: Window, first: ListPage
) -> Window:
    """A one-second window with more calls than a page: page through it, de-duplicating."""
    seen: set[str] = set()
    pages = -(-first.total_count // PER_PAGE)
    listed = first
    for page in range(2, pages + 3):  # one page more: calls may arrive while we page
        for item in listed.items:
            if item["call_id"] not in seen:
                seen.add(item["call_id"])
                window.calls.append(item)
        window.unusable += listed.unusable
        if not listed.size or page > pages + 1:
            break
        listed = await api.list_page({**params, "page": str(page), "per_page": str(PER_PAGE)})
    return window


@dataclass(frozen=True)
class Step:
    """One window of a walk: its calls less those the window before it listed."""

    number: int  # 0 for the oldest window of the walk
    window: Window
    calls: list[dict[str, Any]]


async def walk(
    api: Pages,
    filters: Filters,
    start: datetime,
    end: datetime,
    on_total: Callable[[int], None] | None = None,
) -> AsyncIterator[Step]:
    """The listing of [start, end] window by window, each call once: what `list`, `sync` and
    `sync --dry-run` all read."""
    previous: Window | None = None
    number = 0
    async for window in windows(api, filters, start, end, on_total):
        yield Step(number, window, without_repeats(previous, window))
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
    picked = _moment(call.get("call_picked_at")) or _moment(call.get("created_at"))
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
    moment = _moment(call.get("call_picked_at")) or _moment(call.get("created_at"))
    return moment.timestamp() if moment else None


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


CALL_STATUSES = ("picked", "not_picked", "failed", "busy", "voicemail", "in_progress")
# The documented call fields, in order: the CSV header of `osvi-archiver list`.
CALL_FIELDS = (
    "call_id", "agent_uuid", "agent_name", "phone_number", "from_number", "status",
    "call_type", "duration_seconds", "call_ended_by", "call_ended_reason", "campaign_id",
    "campaign_upload_id", "tag", "created_at", "call_picked_at",
)  # fmt: skip
