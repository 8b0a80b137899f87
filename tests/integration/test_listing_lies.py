"""The nightly proves it missed nothing (issue 20): a listing that lies in every way found,
filtered syncs that keep their own watermark, times without an offset or in the future, and
each sync's check of its own window. Against the fake on loopback, with its listing knobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.cli.status import overview
from archiver.cli.status import render as render_status
from archiver.destinations.folder import LocalFolder
from archiver.engine.outputs import RunResult
from archiver.engine.sync import read_watermark
from archiver.fake import FakeOSVI, Fault, FaultKind
from archiver.fake.calls import agent_uuids
from archiver.monitoring.summary import render
from archiver.osvi.listing import Filters
from archiver.state.database import State
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import statuses
from tests.integration.cli_helpers import osvi
from tests.integration.test_sync import fake_config, picked_between, read_watermark_of, sync

HELD = ("archived", "pending", "not_available")
PICKED = ("picked",)


def held(out: Path) -> set[str]:
    return {cid for cid, status in statuses(out).items() if status in HELD}


def lost(fake: FakeOSVI, out: Path, since: datetime, until: datetime) -> set[str]:
    """The picked calls of [since, until] the archive does not hold with an outcome."""
    return picked_between(fake, since, until) - held(out)


def one_filter(name: str) -> Filters:
    """Each filter a sync takes, with the default status: another listing than the default."""
    seed = fake_config(1).seed
    chosen: dict[str, Any] = {
        "agent_uuid": agent_uuids(seed)[0],
        "status": ("picked", "voicemail"),
        "campaign_id": 1,
        "campaign_upload_id": 10,
        "phone_number": "+91983",
        "call_type": "inbound",
    }
    value = chosen[name]
    return Filters(status=value) if name == "status" else Filters(status=PICKED, **{name: value})


# --- 1. a filtered sync moves no watermark but its own ------------------------------------


@pytest.mark.parametrize(
    "name",
    ["agent_uuid", "status", "campaign_id", "campaign_upload_id", "phone_number", "call_type"],
)
async def test_a_filtered_sync_leaves_the_archives_watermark_where_it_was(
    make_fake: FakeFactory, tmp_path: Path, name: str
) -> None:
    """The reproduction: `sync --since 2d --until 20h`, then a one-agent sync since 21 h, then
    a plain sync: the one-agent sync moved the watermark to now, and 145 of 342 picked calls
    were never archived, every exit code 0."""
    fake = await make_fake(fake_config(400))
    now = datetime.now(UTC)
    first = await sync(
        fake, tmp_path, since=now - timedelta(days=2), until=now - timedelta(hours=20)
    )
    mark = read_watermark_of(tmp_path)
    assert mark is not None
    filtered = await sync(fake, tmp_path, since=now - timedelta(hours=21), filters=one_filter(name))
    assert read_watermark_of(tmp_path) == mark
    with State(tmp_path) as state:  # the filter set keeps a watermark of its own
        own = read_watermark(state, one_filter(name))
    assert own is not None
    assert own > mark
    plain = await sync(fake, tmp_path)
    assert (first.exit_code, filtered.exit_code, plain.exit_code) == (0, 0, 0)
    assert lost(fake, tmp_path, now - timedelta(days=2), now) == set()


async def test_a_filtered_sync_continues_from_its_own_watermark(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(120))
    agent = one_filter("agent_uuid")
    now = datetime.now(UTC)
    assert (await sync(fake, tmp_path, since=now - timedelta(days=3))).exit_code == 0
    # The archive has a watermark; this filter set has none: a usage error that says so.
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    first = await osvi("sync", "--out", str(tmp_path), "--agent", agent.agent_uuid or "", env=env)
    assert first.code == 2
    assert "for these filters (agent_uuid=" in first.stderr
    assert "--since" in first.stderr
    since = await sync(fake, tmp_path, since=now - timedelta(days=1), filters=agent)
    again = await sync(fake, tmp_path, filters=agent)  # from its own watermark
    assert (since.exit_code, again.exit_code) == (0, 0)
    assert again.listing is not None
    assert again.listing.start < now
    view = overview(LocalFolder(tmp_path))
    shown = view["states"][0]
    assert shown["sync_watermark"] is not None
    filters = f"agent_uuid={agent.agent_uuid}, status=picked"
    assert list(shown["other_watermarks"]) == [filters]
    assert f"  of a sync with {filters}: " in render_status(view)
    text = render(again.counts, 1.0, None, None, None, again.watermark, again.listing)
    assert f"sync watermark    {again.watermark} (of {filters})" in text


# --- 2 and 3. no count from the wire is trusted ---------------------------------------------


@pytest.mark.parametrize("mode", ["null", "absent", "page-count", "inflated"])
async def test_sync_archives_every_picked_call_whatever_the_listings_meta_says(
    make_fake: FakeFactory, tmp_path: Path, mode: str
) -> None:
    """With total_count null, absent or counting the page, a full first page was taken for
    the whole window: 100 of 342 picked calls archived, exit 0, the watermark moved past."""
    fake = await make_fake(fake_config(600, list_meta=mode))
    now = datetime.now(UTC)
    since = now - timedelta(days=2)
    result = await sync(fake, tmp_path, since=since)
    assert result.exit_code == 0, result.error
    expected = picked_between(fake, since, now)
    assert len(expected) > 250
    assert lost(fake, tmp_path, since, now) == set()
    assert result.listing is not None
    assert result.listing.complete
    assert result.listing.listed == len(expected)


async def test_an_inflated_count_with_page_ignored_ends_in_a_few_requests(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The reproduction: 6,683 listing requests in 60 s for a one-hour window."""
    fake = await make_fake(fake_config(700, list_meta="inflated", list_ignore_page=True))
    now = datetime.now(UTC)
    since = now - timedelta(hours=1)
    result = await sync(fake, tmp_path, since=since)
    assert result.exit_code == 0, result.error
    assert lost(fake, tmp_path, since, now) == set()
    assert fake.stats.requests["calls"] <= 3 + 1  # and the new archive's token check


async def test_a_window_that_cannot_be_listed_is_named_exits_1_and_keeps_the_watermark(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """More than a page of calls in one second, and an API that ignores `page`: the calls
    past the first page cannot be reached. The sync archives everything else, exits 1 naming
    the window, and the watermark stays before it, so every later sync lists it again; once
    the API pages again, a plain sync gets the rest."""
    fake = await make_fake(fake_config(200, list_ignore_page=True))
    now = datetime.now(UTC)
    burst = now - timedelta(hours=3)
    fake.add_calls(200, created_at=burst - timedelta(seconds=10), picked_at=burst)
    assert len(picked_between(fake, burst, burst)) > 100
    since = now - timedelta(hours=6)
    metrics = tmp_path / "osvi.prom"
    out = tmp_path / "archive"
    first = await sync(fake, out, since=since, metrics_file=metrics)
    assert first.exit_code == 1
    listing = first.listing
    assert listing is not None
    assert not listing.complete
    (gap,) = listing.gaps
    assert gap.start <= burst <= gap.end
    mark = read_watermark_of(out)
    assert mark is None or mark <= gap.start
    report = json.loads((out / "runs" / f"{first.run_id}.json").read_text())
    assert report["exit_code"] == 1
    assert report["listing"]["complete"] is False
    assert report["listing"]["incomplete_windows"][0]["problem"] == gap.problem
    text = render(first.counts, 1.0, None, None, None, first.watermark, listing)
    assert "window            NOT complete" in text
    assert f"could not list {gap.text()}" in text
    samples = {
        (s.name, s.labels.get("calls")): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples["osvi_archiver_listing_incomplete_windows", None] == 1
    assert samples["osvi_archiver_sync_window_complete", None] == 0
    assert samples["osvi_archiver_exit_code", None] == 1
    later = picked_between(fake, burst + timedelta(seconds=1), now)
    assert later <= held(out)  # the windows after it were archived all the same

    if mark is not None:  # a plain sync lists it again, and still cannot: exit 1 again
        again = await sync(fake, out)
        assert again.exit_code == 1
        assert again.listing is not None
        (gap,) = again.listing.gaps
        assert gap.start <= burst <= gap.end
        # It lists again from the watermark less the overlap, so this gap may start before
        # the watermark, which never goes back: it stays where it was, or moves up to the gap.
        after = read_watermark_of(out)
        assert after is not None
        assert mark <= after <= max(mark, gap.start)
    fake.config.list_ignore_page = False  # the API pages again
    healed = await sync(fake, out, since=since) if mark is None else await sync(fake, out)
    assert healed.exit_code == 0, healed.error
    assert lost(fake, out, since, now) == set()
    assert healed.listing is not None
    assert healed.listing.complete
    assert read_watermark_of(out) is not None
    assert read_watermark_of(out) > burst  # type: ignore[operator]


async def test_list_says_when_the_whole_listing_cannot_be_paged(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """`list` without --since pages the whole account: a page that repeats the one before
    (or a `page` ignored) is a listing it cannot finish: exit 1, and it says so."""
    fake = await make_fake(fake_config(250, list_ignore_page=True))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    done = await osvi("list", env=env)
    assert done.code == 1
    assert "the listing is incomplete" in done.stderr
    assert len(done.stdout.splitlines()) == 101  # the header and the one page it could read


# --- 4. times without an offset, times in the future ----------------------------------------


async def test_a_young_call_listed_without_a_utc_offset_stays_pending(
    make_fake: FakeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`2026-12-06T10:00:00` was dropped: the young call became not_available, for good."""
    faults = {FaultKind.PENDING: Fault(rate=1.0)}
    fake = await make_fake(fake_config(30, days=1, naive_dates=True, pending_requests=99,
                                       faults=faults))  # fmt: skip
    result = await sync(fake, tmp_path, since=datetime.now(UTC) - timedelta(days=2))
    assert result.exit_code == 0
    found = statuses(tmp_path)
    assert found
    assert set(found.values()) == {"pending"}
    told = [r for r in caplog.records if getattr(r, "event", None) == "naive_time"]
    assert len(told) == 1


async def test_a_call_picked_up_in_the_future_is_pending_then_archived(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.PENDING: Fault(rate=1.0)}
    fake = await make_fake(fake_config(30, days=1, time_shift=3 * 3600, pending_requests=1,
                                       faults=faults))  # fmt: skip
    since = datetime.now(UTC) - timedelta(days=2)
    first = await sync(fake, tmp_path, since=since)
    assert set(statuses(tmp_path).values()) == {"pending"}
    second = await sync(fake, tmp_path)
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert set(statuses(tmp_path).values()) == {"archived"}


# --- the sync's check of its own window -------------------------------------------------


async def test_a_clean_sync_says_its_window_is_complete(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(60))
    since = datetime.now(UTC) - timedelta(days=4)
    result = await sync(fake, tmp_path, since=since)
    listing = result.listing
    assert listing is not None
    expected = len(picked_between(fake, since, datetime.now(UTC)))
    assert (listing.listed, listing.accounted, listing.complete) == (expected, expected, True)
    text = render(result.counts, 1.0, None, None, None, result.watermark, listing)
    assert f"window            complete: {expected} listed, {expected} with an outcome" in text
    report = json.loads((tmp_path / "runs" / f"{result.run_id}.json").read_text())
    assert report["listing"]["complete"] is True
    assert report["listing"]["filters"] == "status=picked"


async def test_a_sync_with_a_failed_call_says_its_window_is_not_complete(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(20))
    picked = sorted(picked_between(fake, datetime.now(UTC) - timedelta(days=4), datetime.now(UTC)))
    fake.config.faults = {FaultKind.NOT_AUDIO: Fault(calls=frozenset(picked[:1]), times=None)}
    result = await sync(fake, tmp_path, since=datetime.now(UTC) - timedelta(days=4))
    assert result.exit_code == 1
    listing = result.listing
    assert listing is not None
    assert not listing.complete
    assert listing.outcomes["failed"] == 1
    text = "\n".join(listing.lines())
    assert f"{len(picked) - 1} with an outcome (1 failed)" in text


# --- done when: any sequence of syncs over a lying listing -----------------------------------

LIES: dict[str, dict[str, Any]] = {
    "honest": {},
    "meta null": {"list_meta": "null"},
    "meta absent": {"list_meta": "absent"},
    "page count": {"list_meta": "page-count"},
    "inflated, page ignored": {"list_meta": "inflated", "list_ignore_page": True},
    "pages repeated": {"list_repeat_pages": 5, "list_meta": "inflated"},
    "naive times": {"naive_dates": True},
    "times in the future": {"time_shift": 7200},
}


@pytest.mark.parametrize("lie", LIES)
async def test_any_sequence_of_syncs_over_a_lying_listing_misses_no_call(
    make_fake: FakeFactory, tmp_path: Path, lie: str
) -> None:
    """Windowed, filtered, interrupted and plain syncs, in the order of the reproduction:
    at the end every picked call of the span holds an outcome, or a run exited non-zero
    naming the window it could not list."""
    faults = {FaultKind.PENDING: Fault(rate=0.1), FaultKind.NOT_AVAILABLE: Fault(rate=0.05)}
    fake = await make_fake(fake_config(300, faults=faults, **LIES[lie]))
    now = datetime.now(UTC)
    since = now - timedelta(days=2)
    results: list[RunResult] = [
        await sync(fake, tmp_path, since=since, until=now - timedelta(hours=20)),
        await sync(
            fake, tmp_path, since=now - timedelta(hours=21), filters=one_filter("agent_uuid")
        ),
        await sync(fake, tmp_path, max_duration=0.05, concurrency=1),  # stopped: exit 124
        await sync(fake, tmp_path),
        await sync(fake, tmp_path),
    ]
    named = [g for r in results if r.listing for g in r.listing.gaps if r.exit_code != 0]
    missing = lost(fake, tmp_path, since, now)
    assert missing == set() or named, f"{len(missing)} calls missed, no run said so"
    assert results[-1].exit_code == 0 or named


async def test_a_dry_run_names_the_window_it_could_not_list_and_exits_1(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(50, list_ignore_page=True))
    burst = datetime.now(UTC) - timedelta(hours=2)
    fake.add_calls(200, created_at=burst - timedelta(seconds=10), picked_at=burst)
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    done = await osvi("sync", "--dry-run", "--out", str(tmp_path), "--since", "4h", env=env)
    assert done.code == 1
    (line,) = [row for row in done.stdout.splitlines() if row.startswith("incomplete\t")]
    assert "held only calls listed already" in line
    assert "not listed        1 window (see above)" in done.stderr
    assert not tmp_path.joinpath(".osvi-archiver").exists()
