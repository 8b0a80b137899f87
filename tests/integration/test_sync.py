"""`sync` and `list` against the fake (SPEC §2, §5.4, §5.5; issue 5)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.cli.list_calls import print_listing
from archiver.engine.assembly import RunOptions, open_api
from archiver.engine.clocks import Clocks
from archiver.engine.lifecycle import execute
from archiver.engine.outputs import RunResult
from archiver.engine.sync import make_source, read_watermark
from archiver.errors import LocalError
from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.monitoring.counts import NoProgress, RunView
from archiver.osvi.listing import Filters
from archiver.osvi.times import IST, Span
from archiver.redaction import shorten
from archiver.state.database import State
from archiver.state.meta import WATERMARK_KEY
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import (
    archive,
    assert_byte_exact,
    manifest_of,
    quick_sleep,
    settings_for,
    statuses,
)
from tests.integration.cli_helpers import osvi

PICKED = Filters(status=("picked",))


def fake_config(calls: int, **knobs: Any) -> FakeConfig:
    return FakeConfig(calls=calls, **{"days": 3, "size_min": 4096, "size_max": 8192, **knobs})


async def sync(
    fake: FakeOSVI,
    out: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Filters = PICKED,
    **flags: Any,
) -> RunResult:
    settings = settings_for(fake, out, **flags)
    source = make_source(Span(since, until, datetime.now(UTC)), settings.sync_overlap, filters)
    return await execute(
        settings, source, NoProgress(), RunOptions(clocks=Clocks(sleep=quick_sleep))
    )


def picked_between(fake: FakeOSVI, start: datetime, end: datetime) -> set[str]:
    return {
        c.call_id
        for c in fake.calls
        if c.status == "picked" and c.call_picked_at and start <= c.call_picked_at <= end
    }


async def listing(fake: FakeOSVI, out: Path, **kwargs: Any) -> str:
    settings = settings_for(fake, out)
    buffer = io.StringIO()
    async with open_api(settings) as api:
        await print_listing(
            api,
            kwargs.get("filters", Filters()),
            Span(kwargs.get("since"), kwargs.get("until"), datetime.now(UTC)),
            kwargs.get("fmt", "csv"),
            buffer,
        )
    return buffer.getvalue()


async def test_list_walks_every_page_of_a_window_once(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(700))
    since = datetime.now(UTC) - timedelta(days=2)
    rows = list(csv.DictReader(io.StringIO(await listing(fake, tmp_path, since=since))))
    ids = [r["call_id"] for r in rows]
    assert len(ids) == len(set(ids))
    expected = {c.call_id for c in fake.calls if c.call_picked_at and c.call_picked_at >= since}
    assert set(ids) == expected
    assert len(expected) > 300  # more than three pages: the windows had to split
    assert fake.stats.requests["calls"] > 3


async def test_list_without_times_covers_the_whole_account_and_filters(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(250))
    everything = await listing(fake, tmp_path, fmt="jsonl")
    items = [json.loads(line) for line in everything.splitlines()]
    assert {i["call_id"] for i in items} == {c.call_id for c in fake.calls}
    chosen = Filters(status=("busy", "voicemail"), call_type="inbound")
    rows = list(csv.DictReader(io.StringIO(await listing(fake, tmp_path, filters=chosen))))
    assert rows
    assert {(r["status"], r["call_type"]) for r in rows} <= {
        ("busy", "inbound"),
        ("voicemail", "inbound"),
    }
    expected = {
        c.call_id
        for c in fake.calls
        if c.status in ("busy", "voicemail") and c.call_type == "inbound"
    }
    assert {r["call_id"] for r in rows} == expected


async def test_list_output_feeds_run(make_fake: FakeFactory, tmp_path: Path) -> None:
    fake = await make_fake(fake_config(20))
    text = await listing(fake, tmp_path, filters=PICKED)
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    done = await osvi("run", "--out", str(tmp_path / "a"), "-", env=env, stdin=text.encode())
    assert done.code == 0, done.stderr
    picked = {c.call_id for c in fake.calls if c.status == "picked"}
    assert_byte_exact(fake, tmp_path / "a", picked)


async def test_a_list_export_of_every_call_feeds_run_and_unanswered_calls_cost_no_request(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A `list --status any` export names unanswered calls with their status: `run` settles
    them as not_available without asking (two requests each before), and a rerun of the
    same export asks nothing about any call it settled or archived."""
    fake = await make_fake(fake_config(40))
    text = await listing(fake, tmp_path)  # every status
    unanswered = {c.call_id for c in fake.calls if c.status in ("not_picked", "busy", "failed")}
    assert unanswered
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    out = tmp_path / "a"
    done = await osvi("run", "--out", str(out), "-", env=env, stdin=text.encode())
    assert done.code == 0, done.stderr
    assert all(sum(fake.stats.call(cid).requests.values()) == 0 for cid in unanswered)
    seen = statuses(out)
    assert {seen[cid] for cid in unanswered} == {"not_available"}
    settled = [cid for cid, status in seen.items() if status in ("archived", "not_available")]

    def asked() -> int:
        return sum(sum(fake.stats.call(cid).requests.values()) for cid in settled)

    before = asked()
    again = await osvi("run", "--out", str(out), "-", env=env, stdin=text.encode())
    assert again.code == 0, again.stderr
    assert asked() == before
    assert "not available     0\n" in again.stderr  # settled once: not recorded again
    before_line = next(line for line in again.stderr.splitlines() if "and before" in line)
    assert int(before_line.split()[2]) >= len(unanswered)


async def test_list_takes_picked_calls_unless_told_any(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(40))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    picked = await osvi("list", env=env)
    assert picked.code == 0, picked.stderr
    rows = list(csv.DictReader(io.StringIO(picked.stdout)))
    assert {r["call_id"] for r in rows} == {c.call_id for c in fake.calls if c.status == "picked"}
    every = await osvi("list", "--status", "any", env=env)
    assert every.code == 0, every.stderr
    rows = list(csv.DictReader(io.StringIO(every.stdout)))
    assert {r["call_id"] for r in rows} == {c.call_id for c in fake.calls}
    mixed = await osvi("list", "--status", "any,busy", env=env)
    assert mixed.code == 2
    assert "--status any means every status" in mixed.stderr


async def test_sync_window_archives_exactly_the_picked_calls_in_it(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(400))
    day1 = datetime.now(IST).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    day3_end = day1 + timedelta(days=2) - timedelta(microseconds=1)
    result = await sync(fake, tmp_path, since=day1, until=day3_end)
    assert result.exit_code == 0, result.error
    expected = picked_between(fake, day1, day3_end)
    assert set(statuses(tmp_path)) == expected
    assert_byte_exact(fake, tmp_path, expected)
    assert read_watermark_of(tmp_path) == day3_end


def read_watermark_of(out: Path) -> datetime | None:
    with State(out) as state:
        return read_watermark(state)


async def test_calls_arriving_during_a_sync_are_neither_missed_nor_repeated(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(500, api_latency=0.01))
    since = datetime.now(UTC) - timedelta(days=3)

    async def arrivals() -> None:
        while fake.stats.requests["calls"] < 3:
            await asyncio.sleep(0.01)
        fake.add_calls(40)

    adding = asyncio.create_task(arrivals())
    first = await sync(fake, tmp_path, since=since, concurrency=16)
    await adding
    assert first.exit_code == 0
    downloads = fake.stats.requests["download"]
    picked = {c.call_id for c in fake.calls if c.status == "picked"}
    archived_first = {cid for cid, s in statuses(tmp_path).items() if s == "archived"}
    assert archived_first <= picked
    assert len(picked - archived_first) <= 40  # only arrivals can be left for the next sync

    second = await sync(fake, tmp_path)  # plain: from the watermark minus the overlap
    assert second.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked)
    new = picked - archived_first
    assert fake.stats.requests["download"] - downloads == len(new)  # only the new calls
    for call_id in picked:
        assert fake.stats.calls[call_id].downloads_complete == 1


async def test_plain_sync_without_a_watermark_is_a_usage_error(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(5))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    done = await osvi("sync", "--out", str(tmp_path), env=env)
    assert done.code == 2
    assert "--since" in done.stderr
    assert fake.stats.requests == {}


async def test_a_later_explicit_window_does_not_move_the_watermark_over_a_gap(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(100))
    now = datetime.now(UTC)
    await sync(fake, tmp_path, since=now - timedelta(days=3), until=now - timedelta(days=2))
    mark = read_watermark_of(tmp_path)
    await sync(fake, tmp_path, since=now - timedelta(days=1), until=now)
    assert read_watermark_of(tmp_path) == mark
    await sync(fake, tmp_path, since=now - timedelta(days=2, hours=1), until=now)
    assert read_watermark_of(tmp_path) == now


async def test_pending_calls_are_archived_by_a_later_sync(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.PENDING: Fault(rate=0.5)}
    fake = await make_fake(fake_config(60, days=1, pending_requests=1, faults=faults))
    first = await sync(fake, tmp_path, since=datetime.now(UTC) - timedelta(days=2))
    pending = {cid for cid, s in statuses(tmp_path).items() if s == "pending"}
    assert pending
    assert first.exit_code == 0
    mark = read_watermark_of(tmp_path)
    assert mark is not None  # it moved past the pending calls
    await sync(fake, tmp_path)
    assert all(statuses(tmp_path)[cid] == "archived" for cid in pending)
    assert_byte_exact(fake, tmp_path, pending)


async def test_pending_calls_past_the_window_become_not_available(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.NOT_AVAILABLE: Fault(rate=0.5)}
    fake = await make_fake(fake_config(40, days=1, faults=faults))
    await sync(fake, tmp_path, since=datetime.now(UTC) - timedelta(days=2))
    pending = {cid for cid, s in statuses(tmp_path).items() if s == "pending"}
    assert pending
    await sync(fake, tmp_path, pending_window=1)  # every one of them is older than a second
    assert all(statuses(tmp_path)[cid] == "not_available" for cid in pending)


async def test_sync_with_metadata_transcript_and_a_date_layout(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(30))
    layout = "{yyyy}/{mm}/{dd}/{agent_uuid}/{call_id}{ext}"
    result = await sync(
        fake,
        tmp_path,
        since=datetime.now(UTC) - timedelta(days=4),
        layout=layout,
        with_metadata=True,
        with_transcript=True,
    )
    assert result.exit_code == 0, result.error
    calls = {c.call_id: c for c in fake.calls}
    archived = [c for c in manifest_of(tmp_path)["calls"] if c["status"] == "archived"]
    assert archived
    for entry in archived:
        call = calls[entry["call_id"]]
        assert call.call_picked_at is not None
        day = call.call_picked_at.astimezone(IST)
        assert entry["path"] == f"{day:%Y/%m/%d}/{call.agent_uuid}/{call.call_id}.mp4"
        meta = json.loads((tmp_path / entry["metadata_path"]).read_text())
        assert meta == call.detail()
        assert entry["metadata_path"] == entry["path"].removesuffix(".mp4") + ".call.json"
        transcript = json.loads((tmp_path / entry["transcript_path"]).read_text())
        assert transcript == {"call_id": call.call_id, "transcript": call.transcript()}


async def test_run_with_a_date_layout_needs_metadata(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(6))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    layout = "{yyyy}/{mm}/{call_id}{ext}"
    refused = await osvi("run", "--out", str(tmp_path), "--layout", layout, env=env, stdin=ids)
    assert refused.code == 2
    assert "--with-metadata" in refused.stderr
    assert fake.stats.requests == {}
    done = await osvi(
        "run", "--out", str(tmp_path), "--layout", layout, "--with-metadata", env=env, stdin=ids
    )
    assert done.code == 0, done.stderr
    for entry in manifest_of(tmp_path)["calls"]:
        if entry["status"] == "archived":
            assert entry["path"].count("/") == 2
            assert (tmp_path / entry["metadata_path"]).exists()


@pytest.mark.parametrize("text", ["yesterday", "24h", "2026-11-20", "2026-11-20T00:00:00+05:30"])
async def test_sync_cli_accepts_every_time_form(
    make_fake: FakeFactory, tmp_path: Path, text: str
) -> None:
    fake = await make_fake(fake_config(10))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    done = await osvi("sync", "--out", str(tmp_path), "--since", text, env=env)
    assert done.code == 0, done.stderr


async def test_a_second_sync_fetches_only_the_new_calls(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(120))
    await sync(fake, tmp_path, since=datetime.now(UTC) - timedelta(days=4))
    downloads = fake.stats.requests["download"]
    recording_asks = fake.stats.requests["recording"]
    new = {c.call_id for c in fake.add_calls(30) if c.status == "picked"}
    second = await sync(fake, tmp_path)
    assert second.counts.archived == len(new)
    assert fake.stats.requests["download"] - downloads == len(new)
    assert fake.stats.requests["recording"] - recording_asks == len(new)
    assert_byte_exact(fake, tmp_path, new)


async def test_run_retries_pending_calls_first_without_counting_duplicates(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    from tests.integration.archive_helpers import archive

    faults = {FaultKind.PENDING: Fault(rate=0.5)}
    fake = await make_fake(fake_config(30, days=1, pending_requests=1, faults=faults))
    picked = [c.call_id for c in fake.calls if c.status == "picked"]
    await archive(fake, tmp_path, picked[:10])
    pending = {cid for cid, s in statuses(tmp_path).items() if s == "pending"}
    assert pending
    again = await archive(fake, tmp_path, picked[10:] + sorted(pending)[:1])
    assert all(statuses(tmp_path)[cid] == "archived" for cid in pending)
    assert again.counts.duplicates == 0


async def test_sync_against_fake_server_window_then_only_new_calls(tmp_path: Path) -> None:
    """The issue's acceptance: `fake-server` process, `sync --since day1 --until day3`, then a
    plain `sync` after calls were added archives only those."""
    import aiohttp

    from tests.integration.cli_helpers import start_osvi

    server = await start_osvi(
        "fake-server",
        "--port",
        "0",
        "--calls",
        "300",
        "--days",
        "5",
        "--size-max",
        "8KiB",
        "--size-min",
        "4KiB",
    )
    try:
        assert server.stdout is not None
        base_url = ""
        while not base_url:
            line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
            if line.strip().startswith("base_url"):
                base_url = line.split()[-1]
        local = FakeOSVI(FakeConfig(calls=300, days=5, size_min=4096, size_max=8192))
        env = {"OSVI_BASE_URL": base_url, "OSVI_API_TOKEN": local.token}
        today = datetime.now(IST).date()
        day1, day3 = today - timedelta(days=2), today  # day 3 is today: up to now
        done = await osvi(
            "sync", "--out", str(tmp_path), "--since", str(day1), "--until", str(day3), env=env
        )
        assert done.code == 0, done.stderr
        start = datetime.combine(day1, datetime.min.time(), IST)
        end = datetime.now(IST)
        # The process's calls are anchored to its own start: compare by what it lists.
        async with aiohttp.ClientSession(headers={"API-Token": local.token}) as http:
            listed = await _listed(http, base_url, start, end)
            first = set(statuses(tmp_path))
            assert first == listed
            async with http.post(f"{base_url}/_fake/calls?count=25") as response:
                added = set((await response.json())["added"])
        again = await osvi("sync", "--out", str(tmp_path), env=env)
        assert again.code == 0, again.stderr
        new = set(statuses(tmp_path)) - first
        assert new <= added
        assert new  # the picked ones among the added calls
        assert f"archived          {len(new)}" in again.stderr
    finally:
        server.terminate()
        await server.wait()


async def _listed(http: Any, base_url: str, start: datetime, end: datetime) -> set[str]:
    params = {
        "status": "picked",
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "per_page": "100",
    }
    ids: set[str] = set()
    page = 1
    while True:
        async with http.get(f"{base_url}/v1/calls", params={**params, "page": str(page)}) as r:
            body = await r.json()
        ids |= {item["call_id"] for item in body["data"]}
        if page >= body["meta"]["total_pages"]:
            return ids
        page += 1


class Watch:
    """A display that only keeps the run's view, to look at it afterwards."""

    view: RunView | None = None

    def start(self, view: RunView) -> None:
        self.view = view

    def close(self) -> None:
        pass


async def test_sync_total_comes_from_the_listing_and_done_reaches_it(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The total is meta.total_count plus the calls retried first; a retried call that the
    listing names again is done once and still counted, so progress ends at 100%."""
    faults = {FaultKind.PENDING: Fault(rate=0.5)}
    fake = await make_fake(fake_config(40, days=1, pending_requests=1, faults=faults))
    since = datetime.now(UTC) - timedelta(days=2)
    settings = settings_for(fake, tmp_path)
    for run in (1, 2):  # the second retries the pending calls first, then lists them again
        watch = Watch()
        source = make_source(Span(since, None, datetime.now(UTC)), settings.sync_overlap, PICKED)
        result = await execute(
            settings, source, watch, RunOptions(clocks=Clocks(sleep=quick_sleep))
        )
        assert result.exit_code == 0
        assert watch.view is not None
        picked = len(picked_between(fake, since, datetime.now(UTC)))
        retried = 0 if run == 1 else watch.view.retried_again
        assert watch.view.total == picked + retried
        assert watch.view.done == watch.view.total
    assert retried > 0


async def test_the_watermark_is_in_the_summary_the_report_and_the_metrics(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from archiver.monitoring.summary import render

    fake = await make_fake(fake_config(8))
    metrics = tmp_path / "osvi.prom"
    since = datetime.now(UTC) - timedelta(days=4)
    result = await sync(fake, tmp_path / "a", since=since, metrics_file=metrics)
    assert result.exit_code == 0
    with State(tmp_path / "a") as state:
        mark = read_watermark(state)
    assert mark is not None
    shown = mark.isoformat().replace("+00:00", "Z")
    assert result.watermark == shown
    report = json.loads((tmp_path / "a" / "runs" / f"{result.run_id}.json").read_text())
    assert report["sync_watermark"] == shown
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples["osvi_archiver_sync_watermark_timestamp_seconds"] == pytest.approx(
        mark.timestamp(), abs=0.001
    )
    text = render(result.counts, result.seconds, None, None, None, result.watermark)
    assert f"sync watermark    {shown}" in text


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-12-01T10:00:00", "0001-01-01T00:00:00+14:00", "\x1b[31m"]
)
def test_a_watermark_that_is_not_a_moment_is_a_local_error_naming_it(
    tmp_path: Path, value: str
) -> None:
    with State(tmp_path) as state:
        state.set_meta(WATERMARK_KEY, value)
        with pytest.raises(LocalError) as caught:
            read_watermark(state)
    message = str(caught.value)
    assert "'sync_watermark'" in message
    assert repr(shorten(value, 80)) in message
    assert "--since" in message


def damage_watermark(out: Path, value: str = "not a date") -> None:
    with State(out) as state:
        state.set_meta(WATERMARK_KEY, value)


def told(out: Path, result: RunResult, metrics: Path) -> tuple[int, int, object]:
    """The exit code the report and the metrics say, and the report's watermark."""
    report = json.loads((out / "runs" / f"{result.run_id}.json").read_text())
    [code] = [line for line in metrics.read_text().splitlines() if "_exit_code{" in line]
    return report["exit_code"], int(float(code.rsplit(" ", 1)[1])), report["sync_watermark"]


@pytest.mark.parametrize("command", ["run", "sync"])
async def test_a_damaged_watermark_ends_run_and_sync_with_4_as_report_and_metrics_say(
    make_fake: FakeFactory, tmp_path: Path, command: str
) -> None:
    fake = await make_fake(fake_config(6))
    out, metrics = tmp_path / "a", tmp_path / "osvi.prom"
    since = datetime.now(UTC) - timedelta(days=4)
    assert (await sync(fake, out, since=since)).exit_code == 0
    damage_watermark(out)
    if command == "run":
        result = await archive(fake, out, metrics_file=metrics)
    else:
        result = await sync(fake, out, metrics_file=metrics)
    assert result.exit_code == 4
    assert "'sync_watermark' holds 'not a date'" in str(result.error)
    assert told(out, result, metrics) == (4, 4, None)


async def test_a_sync_with_since_sets_a_damaged_watermark_anew(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(6))
    out = tmp_path / "a"
    since = datetime.now(UTC) - timedelta(days=4)
    assert (await sync(fake, out, since=since)).exit_code == 0
    damage_watermark(out)
    result = await sync(fake, out, since=since)
    assert result.exit_code == 0, result.error
    with State(out) as state:
        assert read_watermark(state) is not None
    assert (await sync(fake, out)).exit_code == 0


async def test_status_and_a_plain_sync_of_a_damaged_watermark_exit_4_naming_it(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(4))
    out = tmp_path / "a"
    assert (await sync(fake, out, since=datetime.now(UTC) - timedelta(days=4))).exit_code == 0
    damage_watermark(out, "2026-13-45")
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    for args in (["status"], ["sync"]):
        done = await osvi(*args, "--out", str(out), env=env)
        assert done.code == 4, done.stderr
        assert "'sync_watermark' holds '2026-13-45'" in done.stderr


async def test_the_manifests_csv_fed_back_to_run_retries_its_failed_calls(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The manifest's CSV has a `status` column too, where `failed` is a download of ours
    that failed: fed to `run`, those calls are asked again, never settled as not answered."""
    fake = await make_fake(fake_config(20, faults={FaultKind.REC_500: Fault(rate=0.5, times=1)}))
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    out = tmp_path / "a"
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    first = await osvi("run", "--out", str(out), "--max-attempts", "1", "-", env=env, stdin=ids)
    assert first.code == 1, first.stderr
    failed = {cid for cid, status in statuses(out).items() if status == "failed"}
    assert failed
    exported = await osvi("manifest", "--format", "csv", "--out", str(out), env=env)
    again = await osvi("run", "--out", str(out), "-", env=env, stdin=exported.stdout.encode())
    assert again.code == 0, again.stderr
    assert {statuses(out)[cid] for cid in failed} == {"archived"}
