"""`run` end to end against the fake service over loopback (SPEC §5, §6, §7)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import read_ids
from archiver.engine.lifecycle import execute
from archiver.fake import FakeConfig, Fault, FaultKind
from archiver.monitoring.counts import NoProgress
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import (
    archive,
    assert_byte_exact,
    manifest_of,
    picked_ids,
    quick_sleep,
    settings_for,
    statuses,
)


def small(calls: int, **knobs: Any) -> FakeConfig:
    """A fake with small recordings: many calls, quick tests."""
    return FakeConfig(calls=calls, size_min=8 * 1024, size_max=64 * 1024, **knobs)


async def test_happy_path_archives_every_recording_byte_exact(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(120))
    result = await archive(fake, tmp_path, concurrency=16)
    assert result.exit_code == 0, result.error
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert result.counts.archived == len(picked_ids(fake))
    unanswered = [c.call_id for c in fake.calls if not c.answered]
    assert all(statuses(tmp_path)[cid] == "not_available" for cid in unanswered)
    assert fake.stats.leaks == []
    assert (tmp_path / "runs" / f"{result.run_id}.json").exists()


async def test_files_are_created_with_the_file_mode_and_folders_owner_only(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(6))
    await archive(fake, tmp_path / "a", layout="x/{call_id}{ext}", file_mode="0o640")
    files = list((tmp_path / "a" / "x").iterdir())
    assert files
    assert all(f.stat().st_mode & 0o777 == 0o640 for f in files)
    assert (tmp_path / "a" / "x").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    "kind",
    [
        FaultKind.API_500,
        FaultKind.API_503,
        FaultKind.API_429,
        FaultKind.REC_500,
        FaultKind.REC_503,
        FaultKind.RESET,
        FaultKind.CUT,
        FaultKind.STALL,
    ],
)
async def test_each_transient_fault_is_recovered_byte_exact(
    make_fake: FakeFactory, tmp_path: Path, kind: FaultKind
) -> None:
    config = small(12, retry_after="0", stall_seconds=3, faults={kind: Fault(rate=1.0)})
    fake = await make_fake(config)
    result = await archive(fake, tmp_path, read_timeout=0.3)
    assert result.exit_code == 0, result.error
    assert fake.stats.faults_fired[kind.value] >= len(picked_ids(fake))
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_cut_body_resumes_with_range_instead_of_starting_over(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=10, faults={FaultKind.CUT: Fault(rate=1.0)}))
    await archive(fake, tmp_path)
    ids = picked_ids(fake)
    assert_byte_exact(fake, tmp_path, ids)
    assert fake.stats.statuses["download:206"] == len(ids)
    for call in fake.calls:
        if call.has_recording:  # starting over would send half the body + the whole body
            assert fake.stats.calls[call.call_id].bytes_sent < call.size * 3 // 2


async def test_host_ignoring_range_makes_the_download_start_over(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    config = FakeConfig(calls=10, ignore_range=True, faults={FaultKind.RESET: Fault(rate=1.0)})
    fake = await make_fake(config)
    await archive(fake, tmp_path)
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert fake.stats.statuses["download:206"] == 0
    assert fake.stats.statuses["download:200"] == 2 * len(picked_ids(fake))


async def test_every_attempt_gets_a_fresh_url_and_none_is_used_expired(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.CUT: Fault(rate=0.5, times=2), FaultKind.REC_500: Fault(rate=0.3)}
    config = small(30, url_lifetime=2, bandwidth=400_000, faults=faults)
    fake = await make_fake(config)
    result = await archive(fake, tmp_path, concurrency=8)
    assert result.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert fake.stats.expired_uses == 0
    for call_id in picked_ids(fake):
        requests = fake.stats.calls[call_id].requests
        assert requests["recording"] == requests["download"]  # one URL per download, no reuse


async def test_a_url_too_old_on_arrival_is_not_used(make_fake: FakeFactory, tmp_path: Path) -> None:
    """A clock that moves 1000 s per reading makes every URL older than its usable 840 s by
    the time it would be used: it must be refused, and a fresh one asked for, never fetched."""
    fake = await make_fake(small(3))
    call_id = picked_ids(fake)[0]
    readings = iter(range(0, 10**9, 1000))
    settings = settings_for(fake, tmp_path, max_attempts=3)
    items = read_ids(io.BytesIO(f"{call_id}\n".encode()), "<t>")
    options = RunOptions(clocks=Clocks(wall=lambda: float(next(readings)), sleep=quick_sleep))
    result = await execute(settings, run_input(items), NoProgress(), options)
    assert fake.stats.requests["download"] == 0
    assert fake.stats.calls[call_id].requests["recording"] == 3
    entry = manifest_of(tmp_path)["calls"][0]
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "url_expired")
    assert result.exit_code == 1


async def test_not_audio_body_is_refused_after_a_fresh_try(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    config = small(8, faults={FaultKind.NOT_AUDIO: Fault(rate=1.0, times=None)})
    fake = await make_fake(config)
    result = await archive(fake, tmp_path)
    assert result.exit_code == 1
    manifest = {c["call_id"]: c for c in manifest_of(tmp_path)["calls"]}
    for call_id in picked_ids(fake):
        assert manifest[call_id]["status"] == "failed"
        assert manifest[call_id]["error"]["kind"] == "not_audio"
        assert manifest[call_id]["attempts"] == 2
    assert list(tmp_path.rglob("*.part")) == []
    assert not any(p.suffix in (".mp4", ".bin", ".html") for p in tmp_path.iterdir())


async def test_not_audio_once_is_archived_on_the_fresh_try(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=8, faults={FaultKind.NOT_AUDIO: Fault(rate=1.0)}))
    result = await archive(fake, tmp_path)
    assert result.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_404_is_not_available_for_old_calls_and_pending_for_young_ones(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.NOT_AVAILABLE: Fault(rate=1.0)}
    fake = await make_fake(small(40, days=6, faults=faults))
    await archive(fake, tmp_path)
    now = time.time()
    seen = statuses(tmp_path)
    for call in fake.calls:
        if not call.has_recording:
            continue
        started = (call.call_picked_at or call.created_at).timestamp()
        expected = "pending" if now - started < 48 * 3600 else "not_available"
        assert seen[call.call_id] == expected, call
    assert {"pending", "not_available"} <= set(seen.values())


async def test_rejected_token_stops_the_run_at_once_with_exit_3(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(200))
    ids = [c.call_id for c in fake.calls]
    assert (await archive(fake, tmp_path, ids[:1])).exit_code == 0  # the archive exists
    recordings, downloads = fake.stats.requests["recording"], fake.stats.requests["download"]
    result = await archive(fake, tmp_path, ids[1:], token="wrong-token-000x", concurrency=8)
    assert result.exit_code == 3
    assert "token" in str(result.error)
    assert fake.stats.requests["recording"] - recordings <= 8  # those in flight, no more
    assert fake.stats.requests["download"] == downloads
    manifest_of(tmp_path)  # still written, still valid


async def test_a_rejected_token_creates_no_archive(make_fake: FakeFactory, tmp_path: Path) -> None:
    """A first run with a mistyped token: the API is asked for one listing item before the
    archive is created, and nothing is (no folder, no state, no report): exit 3."""
    from archiver.errors import AuthError

    fake = await make_fake(small(20))
    out = tmp_path / "archive"
    with pytest.raises(AuthError) as caught:
        await archive(fake, out, token="wrong-token-000x")
    assert caught.value.exit_code == 3
    assert not out.exists()
    assert fake.stats.requests["recording"] == 0
    assert fake.stats.requests["calls"] == 1  # the token asked for once: 401 is final
    empty = tmp_path / "empty"
    empty.mkdir()  # a folder made for it beforehand stays as it was
    with pytest.raises(AuthError):
        await archive(fake, empty, token="wrong-token-000x")
    assert list(empty.iterdir()) == []
    assert (await archive(fake, empty)).exit_code == 0  # the right token: one probe, then on


async def test_429_pauses_every_worker_for_the_time_asked(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    ids = [c.call_id for c in (await make_fake(FakeConfig(calls=40))).calls]
    throttled = ids[10]
    faults = {FaultKind.API_429: Fault(calls=frozenset({throttled}))}
    fake = await make_fake(small(40, retry_after="1", faults=faults))
    result = await archive(fake, tmp_path, sleep=asyncio.sleep, concurrency=8)
    assert result.exit_code == 0
    api_events = [(t, s) for t, e, s in fake.stats.events if e in ("recording", "call")]
    when_429 = next(t for t, s in api_events if s == 429)
    # Requests already on the wire when the 429 came back are answered within a few ms;
    # none may start after that until the second asked for has passed.
    quiet = [t for t, _ in api_events if when_429 + 0.05 < t < when_429 + 0.9]
    assert quiet == []
    assert any(t >= when_429 + 0.9 for t, _ in api_events)


async def test_duplicates_are_archived_once_and_invalid_rows_reported(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(5))
    first = picked_ids(fake)[0]
    text = f"call_id\n{first}\n{first.upper()}\nnot-a-uuid\n{first}\n../../etc/passwd\n"
    result = await archive(fake, tmp_path, text=text)
    assert result.exit_code == 1
    assert result.counts.duplicates == 2
    assert result.counts.invalid_rows == 2
    assert fake.stats.calls[first].requests["download"] == 1
    report = (tmp_path / "runs" / f"{result.run_id}.json").read_text()
    assert '"line":4' in report
    assert '"line":6' in report
    assert not (tmp_path.parent / "etc").exists()


async def test_rerun_skips_archived_calls_and_force_downloads_again(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(20))
    await archive(fake, tmp_path)
    downloads = fake.stats.requests["download"]
    again = await archive(fake, tmp_path)
    assert fake.stats.requests["download"] == downloads
    assert again.counts.already_archived == len(picked_ids(fake))
    forced = await archive(fake, tmp_path, force=True)
    assert fake.stats.requests["download"] == downloads + len(picked_ids(fake))
    assert forced.counts.archived == len(picked_ids(fake))
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_a_truncated_archived_file_is_downloaded_again(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(6))
    await archive(fake, tmp_path)
    victim = picked_ids(fake)[0]
    entry = next(c for c in manifest_of(tmp_path)["calls"] if c["call_id"] == victim)
    (tmp_path / entry["path"]).write_bytes(b"short")
    await archive(fake, tmp_path)
    assert_byte_exact(fake, tmp_path, [victim])
    assert fake.stats.calls[victim].requests["download"] == 2


async def test_token_reaches_no_output_and_not_the_recording_host(
    make_fake: FakeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = {FaultKind.RESET: Fault(rate=0.5), FaultKind.API_500: Fault(rate=0.5)}
    fake = await make_fake(small(20, faults=faults))
    caplog.set_level("DEBUG")
    await archive(fake, tmp_path)
    assert fake.stats.leaks == []
    for path in tmp_path.rglob("*.json"):
        assert fake.token not in path.read_text()
    assert fake.token not in caplog.text
    assert "X-Amz-Signature" not in caplog.text


async def test_failing_calls_end_failed_with_their_last_error_and_exit_1(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.REC_500: Fault(rate=1.0, times=None)}
    fake = await make_fake(small(5, faults=faults))
    result = await archive(fake, tmp_path, max_attempts=3)
    assert result.exit_code == 1
    failed = [c for c in manifest_of(tmp_path)["calls"] if c["status"] == "failed"]
    assert len(failed) == len(picked_ids(fake))
    assert all(
        c["attempts"] == 3 and c["error"]["kind"] == "recording_server_error" for c in failed
    )
    assert set(result.counts.failed_ids) == set(picked_ids(fake))


async def test_old_run_reports_are_pruned_to_the_bound(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(2))
    runs = [await archive(fake, tmp_path, keep_run_reports=2) for _ in range(3)]
    kept = sorted(p.stem for p in (tmp_path / "runs").iterdir())
    assert kept == sorted(r.run_id for r in runs[1:])


async def test_the_view_shows_bytes_of_a_download_before_its_first_write(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A display sees a small recording's bytes as they arrive, not only once written
    (writes go in 1 MiB batches)."""
    from archiver.monitoring.counts import RunView

    fake = await make_fake(
        FakeConfig(calls=3, size_min=512 * 1024, size_max=512 * 1024, bandwidth=256 * 1024)
    )
    seen: list[int] = []

    class Watch:
        def start(self, view: RunView) -> None:
            async def poll() -> None:
                while True:
                    seen.append(sum(d.arrived for d in view.downloads.values()))
                    await asyncio.sleep(0.05)

            self._task = asyncio.get_running_loop().create_task(poll())

        def close(self) -> None:
            self._task.cancel()

    settings = settings_for(fake, tmp_path, concurrency=1)
    items = read_ids(io.BytesIO(picked_ids(fake)[0].encode()), "<test>")
    result = await execute(settings, run_input(items), Watch(), RunOptions())
    assert result.exit_code == 0
    assert any(0 < n < 512 * 1024 for n in seen), seen


async def test_a_call_archived_at_its_first_attempt_builds_no_retry_machinery(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: the first attempt is made outside tenacity; a failed one is replayed into the
    policy, so the retries, their count and the stop are the policy's all the same."""
    from archiver.engine import call
    from archiver.net.retrying import call_retrying as real

    built: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(call, "call_retrying", counted)
    fake = await make_fake(small(6))
    assert (await archive(fake, tmp_path / "clean")).exit_code == 0
    assert built == []
    faulty = await make_fake(small(6, faults={FaultKind.REC_500: Fault(rate=1.0, times=1)}))
    result = await archive(faulty, tmp_path / "retried", max_attempts=3)
    assert result.exit_code == 0
    assert len(built) == len(picked_ids(faulty))  # one policy per call that needed it
    assert_byte_exact(faulty, tmp_path / "retried", picked_ids(faulty))
    calls = manifest_of(tmp_path / "retried")["calls"]
    assert {c["attempts"] for c in calls if c["status"] == "archived"} == {2}


@pytest.mark.parametrize(("multipart", "checked"), [(False, True), (True, False)])
async def test_the_manifest_says_whether_each_body_was_checked_against_an_md5_etag(
    make_fake: FakeFactory, tmp_path: Path, multipart: bool, checked: bool
) -> None:
    """A multipart `-N` ETag is never an MD5: no MD5 is computed, and the manifest says so
    (`md5_checked: false`); a plain-MD5 ETag was matched (`true`). Other outcomes: null."""
    fake = await make_fake(small(12, multipart_etag=multipart))
    result = await archive(fake, tmp_path)
    assert result.exit_code == 0, result.error
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    calls = manifest_of(tmp_path)["calls"]
    assert {c["md5_checked"] for c in calls if c["status"] == "archived"} == {checked}
    assert {c["md5_checked"] for c in calls if c["status"] != "archived"} <= {None}


async def test_a_rerun_over_archived_and_settled_ids_asks_the_api_nothing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """not_available is final: a rerun over the same input makes no request (it made two for
    each such call before: /recording, then /call for its age); --retry-not-available asks
    them again, and --force too."""
    faults = {FaultKind.NOT_AVAILABLE: Fault(rate=0.3)}
    fake = await make_fake(small(60, days=6, faults=faults))
    await archive(fake, tmp_path)
    settled = [cid for cid, status in statuses(tmp_path).items() if status == "not_available"]
    archived = [cid for cid, status in statuses(tmp_path).items() if status == "archived"]
    assert settled
    assert archived
    chosen = settled + archived

    def asked() -> int:  # requests about the chosen ids (the state's pending ones are asked)
        return sum(sum(fake.stats.call(cid).requests.values()) for cid in chosen)

    before = asked()
    again = await archive(fake, tmp_path, chosen)
    assert again.exit_code == 0, again.error
    assert asked() == before  # not one request
    assert again.counts.already_not_available == len(settled)
    assert again.counts.already_archived == len(archived)
    assert again.counts.not_available == 0
    recordings = sum(fake.stats.call(cid).requests["recording"] for cid in chosen)
    retried = await archive(fake, tmp_path, chosen, retry_not_available=True)
    after = sum(fake.stats.call(cid).requests["recording"] for cid in chosen)
    assert after == recordings + len(settled)
    assert retried.counts.already_archived == len(archived)
    assert retried.counts.already_not_available == 0
    assert all(statuses(tmp_path)[cid] == "not_available" for cid in settled)
