"""The listing walk with a stub API: splitting, one-second paging, shifting pages."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from archiver.answers import ListPage
from archiver.listing import (
    PER_PAGE,
    Filters,
    Window,
    layout_fields_of,
    started_at_of,
    windows,
    without_repeats,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)


class StubApi:
    """Newest-first listing over `calls` (id, picked_at), with arrivals injected between pages."""

    def __init__(self, calls: list[tuple[str, datetime]]) -> None:
        self.calls = calls
        self.requests = 0
        self.arrivals: list[tuple[str, datetime]] = []

    async def list_page(self, params: Mapping[str, str]) -> ListPage:
        self.requests += 1
        if self.requests == 3 and self.arrivals:
            self.calls += self.arrivals  # arrive mid-walk, shifting every later page
        low = datetime.fromisoformat(params["start_date"])
        high = datetime.fromisoformat(params["end_date"])
        chosen = sorted(
            ((cid, t) for cid, t in self.calls if low <= t <= high),
            key=lambda c: c[1],
            reverse=True,
        )
        page, size = int(params["page"]), int(params["per_page"])
        items = [
            {"call_id": cid, "call_picked_at": t.isoformat()}
            for cid, t in chosen[(page - 1) * size : page * size]
        ]
        return ListPage(items, len(chosen))


def ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1, version=4)) for i in range(count)]


async def walk(api: StubApi, start: datetime, end: datetime) -> list[str]:
    seen: list[str] = []
    previous: Window | None = None
    async for window in windows(api, Filters(), start, end):
        seen += [item["call_id"] for item in without_repeats(previous, window)]
        previous = window
    return seen


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
