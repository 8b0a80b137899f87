"""The listing walk with a stub API: splitting, one-second paging, shifting pages."""

from __future__ import annotations

import bisect
import itertools
import logging
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.osvi.listing import (
    BUDGET_BASE,
    BUDGET_FACTOR,
    PER_PAGE,
    Filters,
    Window,
    layout_fields_of,
    pieces,
    started_at_of,
    windows,
    without_repeats,
)
from archiver.osvi.responses import ListPage
from archiver.osvi.times import naive_times

T0 = datetime(2026, 6, 1, tzinfo=UTC)


class StubApi:
    """Newest-first listing over `calls` (id, picked_at), with arrivals injected between pages,
    and the ways a listing can lie: its meta (`meta`: honest, null, page-count, inflated), a
    `page` it ignores, a page size it caps silently, date filters it ignores, and the next
    `repeats` answers to a page >= 2 repeating the page before it."""

    def __init__(self, calls: list[tuple[str, datetime]], *, meta: str = "honest") -> None:
        self.calls = calls
        self.requests = 0
        self.arrivals: list[tuple[str, datetime]] = []
        self.meta = meta
        self.ignore_page = False
        self.ignore_dates = False
        self.cap = PER_PAGE
        self.repeats = 0
        self._sorted: list[tuple[str, datetime]] = []
        self._times: list[float] = []

    async def list_page(self, params: Mapping[str, str]) -> ListPage:
        self.requests += 1
        if self.requests == 3 and self.arrivals:
            self.calls += self.arrivals  # arrive mid-walk, shifting every later page
        low = datetime.fromisoformat(params["start_date"])
        high = datetime.fromisoformat(params["end_date"])
        if len(self._sorted) != len(self.calls):  # newest first, kept between requests
            self._sorted = sorted(self.calls, key=lambda c: c[1], reverse=True)
            self._times = [-t.timestamp() for _, t in self._sorted]
        if self.ignore_dates:
            chosen = self._sorted
        else:
            first = bisect.bisect_left(self._times, -high.timestamp())
            last = bisect.bisect_right(self._times, -low.timestamp())
            chosen = self._sorted[first:last]
        page, size = int(params["page"]), min(int(params["per_page"]), self.cap)
        if self.ignore_page:
            page = 1
        elif page > 1 and self.repeats:
            self.repeats -= 1
            page -= 1
        items = [
            {"call_id": cid, "call_picked_at": t.isoformat()}
            for cid, t in chosen[(page - 1) * size : page * size]
        ]
        count = {"honest": len(chosen), "null": None, "page-count": len(items)}.get(
            self.meta, 1000 * (len(chosen) + 1)
        )
        pages = None if count is None else -(-count // size)
        per_page = None if self.meta == "null" else size
        return ListPage(items, count, total_pages=pages, per_page=per_page)


def ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1, version=4)) for i in range(count)]


async def walk(api: StubApi, start: datetime, end: datetime) -> list[str]:
    seen, _ = await walk_with_gaps(api, start, end)
    return seen


async def walk_with_gaps(
    api: StubApi, start: datetime, end: datetime
) -> tuple[list[str], list[Window]]:
    """The ids the walk gives, and its windows that could not be listed completely."""
    seen: list[str] = []
    gaps: list[Window] = []
    previous: Window | None = None
    async for window in windows(api, Filters(), start, end):
        seen += [item["call_id"] for item in without_repeats(previous, window)]
        previous = window
        if not window.complete:
            gaps.append(window)
    return seen, gaps


def spread(count: int, seconds: float, offset: int = 0) -> list[tuple[str, datetime]]:
    """`count` calls spread evenly over `seconds` from T0 (ids from `offset` on)."""
    step = seconds / count
    return [
        (cid, T0 + timedelta(seconds=n * step))
        for n, cid in enumerate(ids(offset + count)[offset:])
    ]


async def test_a_busy_range_is_split_until_each_window_fits_a_page() -> None:
    calls = [(cid, T0 + timedelta(seconds=37 * n)) for n, cid in enumerate(ids(1000))]
    api = StubApi(calls)
    seen = await walk(api, T0, T0 + timedelta(days=1))
    assert sorted(seen) == sorted(cid for cid, _ in calls)
    assert len(seen) == len(set(seen))


async def test_more_than_a_page_in_one_second_is_paged_without_repeats_or_misses() -> None:
    calls = [(cid, T0 + timedelta(seconds=5)) for cid in ids(3 * PER_PAGE + 7)]
    api = StubApi(calls)
    api.arrivals = [(cid, T0 + timedelta(seconds=5)) for cid in ids(400)[-20:]]
    seen = await walk(api, T0, T0 + timedelta(seconds=10))
    assert len(seen) == len(set(seen))
    assert set(seen) >= {cid for cid, _ in calls}


async def test_a_call_on_a_window_boundary_is_listed_once() -> None:
    calls = [(cid, T0 + timedelta(hours=12)) for cid in ids(3)]
    calls += [(cid, T0 + timedelta(minutes=n)) for n, cid in enumerate(ids(300)[3:])]
    seen = await walk(StubApi(calls), T0, T0 + timedelta(days=1))
    assert sorted(seen) == sorted(cid for cid, _ in calls)


def test_filters_become_the_apis_parameters() -> None:
    filters = Filters(status=("picked", "voicemail"), campaign_id=3, call_type="inbound")
    assert filters.params() == {
        "status": "picked,voicemail",
        "campaign_id": "3",
        "call_type": "inbound",
    }


def test_layout_fields_come_from_call_picked_at_in_its_own_offset() -> None:
    call: dict[str, Any] = {
        "call_picked_at": "2026-06-01T02:00:00+05:30",
        "created_at": "2026-05-31T20:29:00+00:00",
        "agent_uuid": "1B4E28BA-2FA1-11D2-883F-0016D3CCA427",
    }
    assert layout_fields_of(call) == {
        "yyyy": "2026",
        "mm": "06",
        "dd": "01",
        "agent_uuid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    }
    assert started_at_of(call) == datetime(2026, 5, 31, 20, 30, tzinfo=UTC).timestamp()


def test_unsafe_agent_values_never_reach_a_path() -> None:
    assert "agent_uuid" not in layout_fields_of({"agent_uuid": "../../etc"})
    assert layout_fields_of({}) == {}


# --- a listing that lies (issue 20): no count from the wire is trusted ----------------------


@pytest.mark.parametrize("meta", ["null", "page-count", "inflated"])
async def test_a_full_page_is_never_taken_for_the_whole_window(meta: str) -> None:
    """A null, page-sized or inflated total_count: every call of two days is still found."""
    calls = spread(342, 2 * 86400)
    api = StubApi(calls, meta=meta)
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(days=2))
    assert sorted(seen) == sorted(cid for cid, _ in calls)
    assert gaps == []
    assert api.requests < 60


async def test_an_inflated_count_with_page_ignored_ends_in_a_few_requests() -> None:
    """The reproduction of issue 20: total_count a thousand times too high and `page`
    ignored made a one-hour sync ask 6,683 pages; a page with no new id ends the paging."""
    calls = spread(7, 3600)
    api = StubApi(calls, meta="inflated")
    api.ignore_page = True
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(hours=1))
    assert sorted(seen) == sorted(cid for cid, _ in calls)
    assert gaps == []
    assert api.requests == 2


async def test_hints_that_disagree_with_the_pages_are_warned_with_the_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = StubApi(spread(7, 3600), meta="inflated")
    with caplog.at_level(logging.WARNING, logger="archiver.osvi.listing"):
        await walk(api, T0, T0 + timedelta(hours=1))
    warned = [
        r.getMessage()
        for r in caplog.records
        if getattr(r, "event", None) == "listing_hints_disagree"
    ]
    assert warned
    assert "total_count 8000" in warned[0]
    assert "held 7 calls" in warned[0]


async def test_honest_hints_draw_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="archiver.osvi.listing"):
        await walk(StubApi(spread(1000, 86400)), T0, T0 + timedelta(days=1))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_page_size_the_api_caps_silently_is_paged_by_its_hints() -> None:
    """A short page with hints of more is paged on: an API that pages by 50 loses nothing."""
    calls = spread(120, 10)
    api = StubApi(calls)
    api.cap = 50
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(seconds=10))
    assert sorted(seen) == sorted(cid for cid, _ in calls)
    assert gaps == []


async def test_more_than_a_page_in_one_second_with_page_ignored_is_an_incomplete_window() -> None:
    """Nothing can reach the calls past the first page: the window is said incomplete (tried
    twice), never taken as whole; the windows after it are still walked."""
    dense = [(cid, T0 + timedelta(seconds=5)) for cid in ids(250)]
    later = spread(30, 100, offset=250)
    later = [(cid, t + timedelta(seconds=20)) for cid, t in later]
    api = StubApi(dense + later)
    api.ignore_page = True
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(seconds=200))
    assert len(gaps) == 1
    assert gaps[0].start <= T0 + timedelta(seconds=5) <= gaps[0].end
    assert "page 2 held only calls listed already" in (gaps[0].problem or "")
    assert {cid for cid, _ in later} <= set(seen)
    assert api.requests < 80


async def test_a_page_repeated_once_heals_on_the_second_try() -> None:
    calls = [(cid, T0 + timedelta(seconds=5)) for cid in ids(250)]
    api = StubApi(calls)
    api.repeats = 1
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(seconds=10))
    assert gaps == []
    assert sorted(seen) == sorted(cid for cid, _ in calls)


async def test_a_listing_that_ignores_its_dates_is_given_up_within_the_bound() -> None:
    """The same full page for every window: splitting would go down to every second of the
    range (345,600 requests for two days); the bound stops it, the rest of the range is one
    incomplete window."""
    api = StubApi(spread(150, 600))
    api.ignore_dates = True
    start, end = T0, T0 + timedelta(days=2)
    _, gaps = await walk_with_gaps(api, start, end)
    assert len(gaps) == 1
    assert gaps[0].end == end
    assert "cannot be walked reliably" in (gaps[0].problem or "")
    assert api.requests <= BUDGET_BASE + BUDGET_FACTOR * 18 * 2


async def test_the_bound_never_stops_an_honest_dense_and_clustered_listing() -> None:
    """Clusters of hundreds of calls in a few seconds inside a sparse year: the bound grows
    with the calls found, so an honest listing is always walked to its end."""
    rng = random.Random(7)
    calls: list[tuple[str, datetime]] = []
    for n, cid in enumerate(ids(6000)):
        cluster = n % 12
        at = T0 + timedelta(days=30 * cluster, seconds=rng.uniform(0, 3 if n % 2 else 86400))
        calls.append((cid, at))
    api = StubApi(calls, meta="null")
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(days=365))
    assert gaps == []
    assert sorted(seen) == sorted(cid for cid, _ in calls)


def test_pieces_share_their_boundaries_and_cover_the_range() -> None:
    end = T0 + timedelta(seconds=10)
    cut = pieces(T0, end, 16)
    assert len(cut) == 10  # never shorter than a second
    assert cut[0][0] == T0
    assert cut[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cut))
    assert len(pieces(T0, T0 + timedelta(milliseconds=1500), 16)) == 2


def test_a_time_without_an_offset_is_read_in_ist_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`2026-12-06T10:00:00` was dropped, so a young call lost its age and became
    not_available instead of pending: it is an IST wall time, said once per run."""
    naive_times.reset()
    call = {"call_picked_at": "2026-12-06T10:00:00", "created_at": "2026-12-06T09:59:00"}
    with caplog.at_level(logging.WARNING, logger="archiver.osvi.listing"):
        assert started_at_of(call) == datetime(2026, 12, 6, 4, 30, tzinfo=UTC).timestamp()
        assert layout_fields_of(call) == {"yyyy": "2026", "mm": "12", "dd": "06"}
        started_at_of({"call_picked_at": "2026-12-07T01:00:00"})
    told = [r for r in caplog.records if getattr(r, "event", None) == "naive_time"]
    assert len(told) == 1
    assert "IST" in told[0].getMessage()
    naive_times.reset()


@pytest.mark.parametrize("value", ["", "yesterday", "2026-13-01T00:00:00", "x" * 500, 17, None])
def test_a_time_that_is_not_one_gives_no_age(value: object) -> None:
    assert started_at_of({"call_picked_at": value}) is None


async def test_a_burst_larger_than_the_first_bound_is_paged_to_its_end() -> None:
    """40,000 calls in one second, the first thing the walk meets: the bound grows with each
    page of new calls, so it never stops an honest burst."""
    calls = [(cid, T0 + timedelta(seconds=5)) for cid in ids(40_000)]
    api = StubApi(calls, meta="null")
    seen, gaps = await walk_with_gaps(api, T0, T0 + timedelta(days=1))
    assert gaps == []
    assert len(seen) == 40_000
