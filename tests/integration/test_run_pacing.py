"""The run's pacing (§6): input read as workers free up, the API rate cap, the manifest timer,
and the demo as a newcomer runs it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.engine import lifecycle as run_module
from archiver.engine.assembly import RunOptions
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import CallId, InputItem
from archiver.engine.lifecycle import execute
from archiver.fake import FakeConfig
from archiver.monitoring.counts import NoProgress
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import archive, manifest_of, picked_ids, settings_for
from tests.integration.cli_helpers import osvi


async def test_input_is_read_only_as_fast_as_the_run_uses_it(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read ahead in blocks, but boundedly: at most AHEAD items ahead of the feeder, which
    holds one BLOCK and waits for the queue of `concurrency` places and the workers."""
    from archiver.engine import input_feed as feed

    monkeypatch.setattr(feed, "AHEAD", 20)
    monkeypatch.setattr(feed, "BLOCK", 5)
    fake = await make_fake(FakeConfig(calls=200, size_min=4096, size_max=4096, api_latency=0.01))
    pulled = 0
    ahead: list[int] = []

    def ids() -> Iterator[InputItem]:
        nonlocal pulled
        for number, call in enumerate(fake.calls, 1):
            pulled += 1
            ahead.append(pulled - fake.stats.requests["recording"])
            yield CallId(call.call_id, "<gen>", number)

    settings = settings_for(fake, tmp_path, concurrency=2)
    await execute(settings, run_input(ids()), NoProgress(), RunOptions())
    assert pulled == 200
    # The buffer, the feeder's block, the queue, the workers, the one being read.
    assert max(ahead) <= 20 + 5 + 2 + 2 + 1


async def test_api_requests_stay_under_max_requests_per_second(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=30, size_min=4096, size_max=8192))
    settings = settings_for(fake, tmp_path, concurrency=16, max_requests_per_second=20)
    ids = iter([CallId(c.call_id, "<gen>", n) for n, c in enumerate(fake.calls, 1)])
    await execute(settings, run_input(ids), NoProgress(), RunOptions())
    times = sorted(t for t, endpoint, _ in fake.stats.events if endpoint != "download")
    assert len(times) >= 30
    # Any 11 consecutive API requests span at least half a second at 20 per second.
    spans = [times[i + 10] - times[i] for i in range(len(times) - 10)]
    assert min(spans) >= 0.45


async def test_manifest_is_rewritten_during_a_long_run(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_module, "MANIFEST_INTERVAL", 0.2)
    fake = await make_fake(
        FakeConfig(calls=8, size_min=256 * 1024, size_max=256 * 1024, bandwidth=256 * 1024)
    )
    settings = settings_for(fake, tmp_path, concurrency=2)
    ids = iter([CallId(c.call_id, "<gen>", n) for n, c in enumerate(fake.calls, 1)])
    task = asyncio.create_task(execute(settings, run_input(ids), NoProgress(), RunOptions()))
    seen_during_run: list[int] = []
    while not task.done():
        await asyncio.sleep(0.1)
        path = tmp_path / "manifest.json"
        if path.exists() and not task.done():
            seen_during_run.append(json.loads(path.read_text())["total"])
    await task
    assert seen_during_run, "no manifest appeared while the run went on"
    assert 0 < max(seen_during_run) < 8 or len(set(seen_during_run)) > 1
    manifest_of(tmp_path)


async def test_demo_archives_the_fake_calls_into_demo_archive(tmp_path: Path) -> None:
    done = await osvi("demo", cwd=tmp_path, deadline=120)
    assert done.code == 0, done.stderr
    manifest = manifest_of(tmp_path / "demo-archive")
    assert sum(c["status"] == "archived" for c in manifest["calls"]) > 30
    assert "osvi-archiver summary" in done.stderr
    assert "demo-archive/manifest.json" in done.stderr
    assert list((tmp_path / "demo-archive").rglob("*.part")) == []
    # Its closing words make sense to someone who installed the wheel (no Makefile there).
    assert "Run `osvi-archiver demo` again" in done.stderr
    assert "Run `make demo` again" not in done.stderr


async def test_a_rate_limited_api_is_met_with_fewer_calls_and_requests(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The fake answers 429 above 50 requests/s; the tool is allowed 200. It backs off (AIMD)
    instead of hammering: few requests end in 429, and everything is archived."""
    from tests.integration.archive_helpers import archive, picked_ids

    fake = await make_fake(FakeConfig(calls=300, size_min=4096, size_max=4096, api_rate_limit=50))
    result = await archive(
        fake, tmp_path, picked_ids(fake), sleep=asyncio.sleep, concurrency=32,
        max_requests_per_second=200, max_attempts=10,
    )  # fmt: skip
    assert result.exit_code == 0
    api_requests = fake.stats.requests["recording"] + fake.stats.requests["call"]
    assert fake.stats.faults_fired["rate-limit"] < 0.25 * api_requests


async def test_bwlimit_holds_the_whole_run_to_its_rate(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """--bwlimit 256k over ~1.3 MiB: the downloads wait, all together, for the rate (the
    waits are recorded, not slept); without it only the API's pacing waits."""
    from archiver.fake import FakeConfig

    fake = await make_fake(FakeConfig(calls=24, size_min=64 << 10, size_max=64 << 10))
    waits: list[float] = []

    async def recorded(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    result = await archive(fake, tmp_path / "a", sleep=recorded, bwlimit="256k", concurrency=8)
    assert result.exit_code == 0
    total = result.counts.bytes
    assert total > 1 << 20
    # What the bucket could not cover from its burst and the real time the run took.
    assert sum(waits) >= (total - (256 << 10) * (1 + result.seconds)) / (256 << 10)
    limited, waits[:] = sum(waits), []
    assert (await archive(fake, tmp_path / "b", sleep=recorded)).exit_code == 0
    assert sum(waits) < limited / 10  # the API's own pacing only


async def test_max_duration_stops_the_run_cleanly_with_124_and_a_rerun_continues(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    from archiver.fake import FakeConfig

    fake = await make_fake(FakeConfig(calls=30, size_min=256 << 10, size_max=256 << 10,
                                      bandwidth=256 << 10))  # fmt: skip
    result = await archive(fake, tmp_path, max_duration="1.5s", concurrency=2)
    assert result.exit_code == 124
    assert 0 < result.counts.archived < len(picked_ids(fake))
    report = json.loads((tmp_path / "runs" / f"{result.run_id}.json").read_text())
    assert report["exit_code"] == 124
    assert report["interrupted"] is True
    assert "max-duration" in report["error"]
    assert list(tmp_path.rglob("*.part")) == []
    fast = await archive(fake, tmp_path)
    assert fast.exit_code == 0
    assert fast.counts.already_archived == result.counts.archived
    assert manifest_of(tmp_path)["calls"]


async def test_a_sigterm_just_after_the_deadline_still_stops_cleanly(tmp_path: Path) -> None:
    """A supervisor's limit set to the same time: its SIGTERM must not make the run exit at
    once as a second signal would (nothing written)."""
    import signal as signals

    from archiver.engine.signals import Signals
    from archiver.errors import DeadlineReached

    stops = Signals()
    task = asyncio.ensure_future(asyncio.sleep(30))
    stops.stops(task)
    stops._expire("2s")
    stops.handle(signals.SIGTERM)  # os._exit here would end the test process
    assert isinstance(stops.received[0], DeadlineReached)
    assert stops.received[0].exit_code == 124
    assert [r.exit_code for r in stops.received] == [124, 143]
    with pytest.raises(asyncio.CancelledError):
        await task
