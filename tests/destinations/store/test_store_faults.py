"""A bucket archive against a store that refuses, slows, loses replies or is shared (issue 21):
moto's S3 server behind the fault proxy (tests/store/faults.py), every fault ending in a
truthful, bounded outcome."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.outcomes import Status
from archiver.destinations.store.verify_bucket import verify_store
from archiver.fake import FakeConfig, FakeOSVI
from archiver.state import connection as sqlite
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import ACCESS_KEY, S3, SECRET_KEY
from tests.destinations.store.faults import FaultProxy, Rule
from tests.destinations.store.test_store_run import (
    PREFIX,
    assert_in_bucket,
    destination,
    manifest_in,
    small,
)
from tests.integration.archive_helpers import archive, picked_ids
from tests.integration.cli_helpers import env_for, finish, start_osvi


def via(proxy: FaultProxy) -> dict[str, Any]:
    """The store settings that send the tool's requests through the proxy."""
    return {"store_endpoint": proxy.endpoint, "store_allow_http": True,
            "store_region": "us-east-1"}  # fmt: skip


async def through(s3: S3, proxy: FaultProxy, fake: FakeOSVI, state: Path, **flags: Any) -> Any:
    return await archive(fake, s3.url(PREFIX), state_dir=state, **via(proxy), **flags)  # type: ignore[arg-type]


def recording_put(call_id: str) -> Rule:
    """The store refusing every PUT of one recording's key (400 InvalidRequest)."""
    return Rule(lambda m, key, q: m == "PUT" and call_id in key, "refuse", times=None)


async def test_one_object_the_store_refuses_is_that_calls_outcome_and_every_other_is_archived(
    make_fake: FakeFactory, s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The reproduction: a 400 InvalidRequest to one recording's PUT stopped every run at
    that call with exit 4, forever. Now it is that call's `failed` (store_refused, with the
    store's reason) and the run goes on; a rerun tries it again, and nothing else."""
    fake = await make_fake(small(calls=30))
    ids = picked_ids(fake)
    refused = ids[1]
    proxy.add(recording_put(refused))
    first = await through(s3, proxy, fake, tmp_path / "state")
    assert first.exit_code == 1, first.error
    assert first.counts.failed == 1
    assert first.counts.failed_kinds == ["store_refused"]
    entries = {c["call_id"]: c for c in manifest_in(s3, fake, tmp_path / "state")["calls"]}
    assert entries[refused]["status"] == Status.FAILED
    assert "InvalidRequest" in entries[refused]["error"]["message"]
    assert_in_bucket(s3, fake, [i for i in ids if i != refused], tmp_path / "state")
    assert not [k for k in s3.keys(PREFIX) if ".osvi-archiver-probe-" in k]  # the probe is gone
    downloads = fake.stats.requests["download"]
    again = await through(s3, proxy, fake, tmp_path / "state")
    assert again.exit_code == 1
    assert fake.stats.requests["download"] - downloads == 1  # the refused call only


async def test_a_store_that_refuses_the_whole_folder_stops_the_run_with_exit_4(
    make_fake: FakeFactory, s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """403 on every write under the archive's recordings (a policy on the prefix): the probe
    beside the refused key is refused too, so the run stops, exit 4, saying so."""
    fake = await make_fake(small(calls=20))
    proxy.add(Rule(lambda m, key, q: m == "PUT" and ".osvi-archiver/" not in key, "refuse",
                   times=None, status=403, code="AccessDenied", message="denied"))  # fmt: skip
    result = await through(s3, proxy, fake, tmp_path / "state")
    assert result.exit_code == 4
    assert "refuses writes under" in str(result.error)
    assert "AccessDenied" in str(result.error)
    assert fake.stats.requests["download"] < len(picked_ids(fake))  # it stopped early


FOREIGN = ("a//b.mp4", "ctl\x01name", "x/../y.mp4")


async def test_keys_the_store_client_cannot_parse_are_skipped_with_one_warning(
    make_fake: FakeFactory, s3: S3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`a//b`, a control character or a `..` segment anywhere under the prefix, the tool's own
    folders included: verify, a rebuild and every run exited 4. They are skipped, said once."""
    fake = await make_fake(small(calls=8))
    for folder in ("", "runs/", "manifest/", ".osvi-archiver/"):
        for key in FOREIGN:
            s3.client.put_object(Bucket=s3.bucket, Key=f"{PREFIX}/{folder}{key}", Body=b"x")
    url: Any = s3.url(PREFIX)
    first = await archive(fake, url, state_dir=tmp_path / "a", keep_run_reports=1, **s3.settings())
    second = await archive(fake, url, state_dir=tmp_path / "a", keep_run_reports=1, **s3.settings())
    assert (first.exit_code, second.exit_code) == (0, 0), (first.error, second.error)
    # runs/ could not be listed whole: no report pruned (said), none deleted that is not one
    reports = [k for k in s3.keys(f"{PREFIX}/runs/") if k.endswith(".json")]
    assert reports == [f"{PREFIX}/runs/{r.run_id}.json" for r in (first, second)]
    assert set(s3.keys(f"{PREFIX}/runs/")) >= {f"{PREFIX}/runs/{key}" for key in FOREIGN}
    assert any(getattr(r, "event", None) == "prune_failed" for r in caplog.records)
    report = await verify_store(destination(s3, fake, tmp_path / "a"))
    assert report.ok, report.problems
    assert any(getattr(r, "event", None) == "foreign_keys" for r in caplog.records)
    # No snapshot: the state is rebuilt from the objects, the foreign keys skipped. (The
    # recordings listed in the same page as one are not seen: downloaded again, same bytes.)
    s3.delete(f"{PREFIX}/.osvi-archiver/state.sqlite3")
    rebuilt = await archive(fake, url, state_dir=tmp_path / "b", **s3.settings())
    assert rebuilt.exit_code == 0, rebuilt.error
    assert_in_bucket(s3, fake, picked_ids(fake), tmp_path / "b")


SNAPSHOT = f"{PREFIX}/.osvi-archiver/state.sqlite3"


def snapshot_put(status: int = 403) -> Rule:
    return Rule(lambda m, key, q: m == "PUT" and key == SNAPSHOT, "refuse", times=None,
                status=status, code="AccessDenied", message="denied")  # fmt: skip


async def test_two_machines_whose_states_diverged_are_merged_and_nothing_is_lost_or_fetched_twice(
    make_fake: FakeFactory,
    s3: S3,
    proxy: FaultProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reproduction: A's final snapshot upload fails, B restores the older snapshot and
    archives more, A reruns: it trusted its own state (its generation as high as B's) and
    B's calls were never in it. Now A merges: B's snapshot as the base, A's own calls added
    where the bucket holds their objects."""
    fake = await make_fake(small(calls=40))
    ids = picked_ids(fake)
    one, two, three = ids[:8], ids[8:16], ids[16:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert (await through(s3, proxy, fake, a, ids=one)).exit_code == 0
    proxy.add(snapshot_put())
    failed = await through(s3, proxy, fake, a, ids=two)
    assert failed.exit_code == 4  # its snapshot could not be written: said, exit 4
    proxy.clear()
    assert (await through(s3, proxy, fake, b, ids=three)).exit_code == 0  # from A's first
    downloads = fake.stats.requests["download"]
    again = await through(s3, proxy, fake, a)
    assert again.exit_code == 0, again.error
    assert fake.stats.requests["download"] == downloads  # nothing fetched twice
    assert again.counts.already_archived == len(ids)
    merged = [r for r in caplog.records if getattr(r, "event", None) == "states_merged"]
    assert [getattr(r, "kept", None) for r in merged] == [len(two)]
    assert_in_bucket(s3, fake, ids, a)
    report = await verify_store(destination(s3, fake, a))
    assert report.ok, report.problems
    back = await through(s3, proxy, fake, b)  # and B, from A's merged snapshot
    assert back.exit_code == 0
    assert fake.stats.requests["download"] == downloads


async def test_a_merge_keeps_no_call_whose_object_the_bucket_lost(
    make_fake: FakeFactory, s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=20))
    ids = picked_ids(fake)
    a, b = tmp_path / "a", tmp_path / "b"
    assert (await through(s3, proxy, fake, a, ids=ids[:4])).exit_code == 0
    proxy.add(snapshot_put())
    assert (await through(s3, proxy, fake, a, ids=ids[4:8])).exit_code == 4
    proxy.clear()
    assert (await through(s3, proxy, fake, b, ids=ids[8:])).exit_code == 0
    lost = ids[5]
    s3.delete(f"{PREFIX}/{lost}.mp4")  # A archived it; the bucket no longer holds it
    downloads = fake.stats.requests["download"]
    again = await through(s3, proxy, fake, a)
    assert again.exit_code == 0
    assert fake.stats.requests["download"] - downloads == 1  # that one call, again
    assert_in_bucket(s3, fake, ids, a)


async def test_an_empty_or_foreign_state_is_never_taken_for_a_new_one_in_a_bucket(
    make_fake: FakeFactory, s3: S3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 0-byte local state is set aside (the snapshot restored); a snapshot that is not an
    osvi-archiver state is passed over for the rebuild from the objects: either way nothing
    is downloaded again and the manifest keeps every call."""
    fake = await make_fake(small(calls=10))
    state = tmp_path / "state"
    url: Any = s3.url(PREFIX)
    assert (await archive(fake, url, state_dir=state, **s3.settings())).exit_code == 0
    downloads = fake.stats.requests["download"]
    local = next(state.rglob("state.sqlite3"))
    local.write_bytes(b"")
    again = await archive(fake, url, state_dir=state, **s3.settings())
    assert again.exit_code == 0
    assert "an empty file" in caplog.text
    s3.client.put_object(Bucket=s3.bucket, Key=SNAPSHOT, Body=b"")
    fresh = await archive(fake, url, state_dir=tmp_path / "elsewhere", **s3.settings())
    assert fresh.exit_code == 0
    assert "passed over" in caplog.text
    assert fake.stats.requests["download"] == downloads
    assert_in_bucket(s3, fake, picked_ids(fake), tmp_path / "elsewhere")


async def test_status_and_the_last_success_are_in_the_snapshot_of_the_run_that_made_them(
    make_fake: FakeFactory, s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Issue 21: the last run and last success were recorded after the final snapshot:
    `status` elsewhere said 'none recorded / never', and a new pod whose run exited 1 wrote
    no last success, firing the never-succeeded alert falsely."""
    from prometheus_client.parser import text_string_to_metric_families

    from archiver.cli.status import overview

    fake = await make_fake(small(calls=10))
    ids = picked_ids(fake)
    good = await through(s3, proxy, fake, tmp_path / "a", ids=ids[:4])
    assert good.exit_code == 0
    seen = overview(destination(s3, fake, tmp_path / "elsewhere"))["states"][0]
    assert seen["last_run"]["run_id"] == good.run_id
    assert seen["last_run"]["exit_code"] == 0
    assert seen["last_success_at"] is not None
    proxy.add(recording_put(ids[5]))
    metrics = tmp_path / "pod.prom"
    failed = await through(s3, proxy, fake, tmp_path / "new-pod", metrics_file=metrics)
    assert failed.exit_code == 1
    names = {s.name for f in text_string_to_metric_families(metrics.read_text()) for s in f.samples}
    assert "osvi_archiver_last_success_timestamp_seconds" in names


async def test_max_duration_stops_a_rebuild_which_the_next_run_goes_on_with(
    make_fake: FakeFactory,
    s3: S3,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21: `--max-duration 2s` ran a rebuild of 3,000 objects to its end (18.9 s) and
    exited 0. It stops there now, the lease released, and the next run goes on from the
    last page the rebuild committed: nothing is downloaded again."""
    from archiver.destinations.store import snapshots
    from archiver.errors import DeadlineReached

    monkeypatch.setattr(snapshots, "REBUILD_PAGE", 4)
    fake = await make_fake(small(calls=24))
    assert (await through(s3, proxy, fake, tmp_path / "a")).exit_code == 0
    downloads = fake.stats.requests["download"]
    s3.delete(SNAPSHOT)
    proxy.add(Rule(lambda m, key, q: m == "HEAD" and key.endswith(".mp4"), "delay",
                   times=None, seconds=0.4))  # fmt: skip
    with pytest.raises(DeadlineReached):
        await through(s3, proxy, fake, tmp_path / "b", max_duration=1.0)
    assert f"{PREFIX}/.osvi-archiver/lock" not in s3.keys(PREFIX)  # released at once
    marked = sqlite.read_meta(next((tmp_path / "b").rglob("state.sqlite3")), "rebuild_after")
    assert marked  # some pages done, kept
    proxy.clear()
    again = await through(s3, proxy, fake, tmp_path / "b")
    assert again.exit_code == 0, again.error
    assert fake.stats.requests["download"] == downloads
    assert_in_bucket(s3, fake, picked_ids(fake), tmp_path / "b")


async def test_sigterm_during_a_rebuild_stops_it_cleanly_and_releases_the_lease(
    make_fake: FakeFactory, s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Issue 21: SIGTERM during a rebuild killed the process outright (no word) and left
    the lease for 60 s. It stops cleanly now: exit 143, said, the lease released."""
    fake = await make_fake(small(calls=24))
    assert (await through(s3, proxy, fake, tmp_path / "a")).exit_code == 0
    s3.delete(SNAPSHOT)
    proxy.add(Rule(lambda m, key, q: m == "HEAD" and key.endswith(".mp4"), "delay",
                   times=None, seconds=5))  # fmt: skip
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "b"), OSVI_STORE_ENDPOINT=proxy.endpoint,
                  OSVI_STORE_ALLOW_HTTP="true", OSVI_STORE_REGION="us-east-1",
                  AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)  # fmt: skip
    process = await start_osvi("run", "--out", s3.url(PREFIX), "-", env=env, stdin=b"")
    for _ in range(400):
        await asyncio.sleep(0.05)
        if [s for s in proxy.requests("HEAD") if s.key.endswith(".mp4")] or proxy.requests("GET"):
            break
    await asyncio.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    done = await finish(process)
    assert done.code == 143, done.stderr
    assert time.monotonic() - started < 5
    assert "interrupted by SIGTERM" in done.stderr
    assert f"{PREFIX}/.osvi-archiver/lock" not in s3.keys(PREFIX)


async def test_done_when_a_refusing_slow_shared_store_ends_every_fault_truthfully(
    make_fake: FakeFactory,
    s3: S3,
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 21's 'done when': a store that refuses one key, slows one part to 100 KB/s,
    answers 503 to one lock renewal and holds a foreign `a//b` key under the prefix. The run
    archives every other call, is SIGTERMed, leaves no incomplete upload and a valid
    manifest; a rerun on another machine completes it, exit 1 (the refused call), nothing
    downloaded twice but what was in flight."""
    import os

    monkeypatch.setattr("archiver.destinations.store.lease.LEASE_SECONDS", 6.0)
    fake = await make_fake(FakeConfig(calls=30, size_min=64 << 10, size_max=7 << 20))
    ids = picked_ids(fake)
    refused = ids[0]
    s3.client.put_object(Bucket=s3.bucket, Key=f"{PREFIX}/a//b.mp4", Body=b"foreign")
    lock_puts = [0]

    def second_lock_put(method: str, key: str, query: str) -> bool:
        if method == "PUT" and key.endswith(".osvi-archiver/lock"):
            lock_puts[0] += 1
            return lock_puts[0] == 2  # the first renewal
        return False

    proxy.add(recording_put(refused))
    proxy.add(Rule(second_lock_put, "fail", status=503, code="SlowDown", message="slow down"))
    proxy.add(Rule(lambda m, k, q: m == "PUT" and "partNumber" in q, "slow", rate=100_000))
    run = asyncio.ensure_future(through(s3, proxy, fake, tmp_path / "a", concurrency=4))
    for _ in range(600):
        await asyncio.sleep(0.05)
        if [s for s in proxy.requests("POST") if "uploads" in s.query] and lock_puts[0] >= 3:
            break
    await asyncio.sleep(1.0)  # the slow part under way
    assert not run.done(), run.result().error
    os.kill(os.getpid(), signal.SIGTERM)
    first = await asyncio.wait_for(run, 30)
    assert first.exit_code == 143, first.error
    assert s3.uploads() == []  # the part in flight aborted, not left for the lifecycle rule
    archived = {c["call_id"] for c in manifest_in(s3, fake, tmp_path / "a")["calls"]
                if c["status"] == Status.ARCHIVED}  # fmt: skip
    assert archived
    assert lock_puts[0] >= 3  # a renewal failed, the next one carried the lease on
    proxy.clear()
    proxy.add(recording_put(refused))
    again = await through(s3, proxy, fake, tmp_path / "b")  # another machine
    assert again.exit_code == 1, again.error
    assert again.counts.failed_kinds == ["store_refused"]
    for call_id in archived:  # fetched once, never again
        assert fake.stats.calls[call_id].downloads_complete == 1, call_id
    assert_in_bucket(s3, fake, [i for i in ids if i != refused], tmp_path / "b")


async def test_a_snapshot_whose_old_number_is_not_a_number_is_no_internal_error(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    """Issue 21: non-numeric generation metadata on the snapshot exited 70."""
    fake = await make_fake(small(calls=6))
    url: Any = s3.url(PREFIX)
    assert (await archive(fake, url, state_dir=tmp_path / "a", **s3.settings())).exit_code == 0
    body = s3.body(SNAPSHOT)
    s3.client.put_object(Bucket=s3.bucket, Key=SNAPSHOT, Body=body,
                         Metadata={"osvigeneration": "not-a-number"})  # fmt: skip
    for machine in ("a", "b"):  # its own state of another lineage; none at all
        again = await archive(fake, url, state_dir=tmp_path / machine, **s3.settings())
        assert again.exit_code == 0, again.error
        assert again.counts.already_archived == len(picked_ids(fake))
