"""A run into an S3 bucket (moto's server on loopback), against the fake OSVI service: the
promises of a folder (§5 to §7) kept in a bucket (§12)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import obstore
import pytest

from archiver.config.out_dir import parse_store_url
from archiver.config.settings import load_settings
from archiver.destinations.store.bucket import StoreDestination
from archiver.destinations.store.client import META_CALL, META_SHA256, META_SIZE
from archiver.destinations.store.lease import Lease
from archiver.destinations.store.uploads import UPLOAD_CHUNK
from archiver.errors import ArchiveLocked
from archiver.fake import FakeConfig, FakeOSVI
from archiver.fake.config import Fault, FaultKind
from archiver.manifest.export import export
from archiver.manifest.writer import load_schema
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import S3
from tests.integration.archive_helpers import archive, picked_ids

PREFIX = "archive"


def small(calls: int = 12, **knobs: Any) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8 * 1024, size_max=64 * 1024, **knobs)


async def into(s3: S3, fake: FakeOSVI, state_dir: Path, **flags: Any) -> Any:
    return await archive(fake, s3.url(PREFIX), state_dir=state_dir, **s3.settings(), **flags)  # type: ignore[arg-type]


def destination(s3: S3, fake: FakeOSVI, state_dir: Path) -> StoreDestination:
    settings = load_settings(
        {"base_url": fake.base_url, "out_dir": s3.url(PREFIX), "state_dir": state_dir,
         **s3.settings()},
        config_path=None,
        environ={},
    )  # fmt: skip
    return StoreDestination.from_settings(settings)


def manifest_in(s3: S3, fake: FakeOSVI, state_dir: Path) -> dict[str, Any]:
    """The bucket's manifest as `osvi-archiver manifest` prints it, each part checked."""
    index = json.loads(s3.body(f"{PREFIX}/manifest.json"))
    jsonschema.Draft202012Validator(load_schema("index")).validate(index)
    for listed in index["parts"]:
        body = s3.body(f"{PREFIX}/{listed['path']}")
        assert hashlib.sha256(body).hexdigest() == listed["sha256"]
    out = io.StringIO()
    export(destination(s3, fake, state_dir), None, "json", out)
    manifest: dict[str, Any] = json.loads(out.getvalue())
    assert len(manifest["calls"]) == index["total"]
    return manifest


def assert_in_bucket(s3: S3, fake: FakeOSVI, ids: list[str], state_dir: Path) -> None:
    """Every call archived, its object the fake's bytes, its metadata the tool's."""
    calls = {c["call_id"]: c for c in manifest_in(s3, fake, state_dir)["calls"]}
    for call_id in ids:
        entry = calls[call_id]
        assert entry["status"] == "archived", entry
        key = f"{PREFIX}/{entry['path']}"
        data = s3.body(key)
        expected = fake.account.expected_sha256(call_id)
        assert hashlib.sha256(data).hexdigest() == expected == entry["sha256"]
        meta = s3.metadata(key)
        assert meta[META_SHA256] == expected
        assert meta[META_SIZE] == str(len(data)) == str(entry["bytes"])
        assert meta[META_CALL] == call_id
    assert s3.uploads() == []
    assert list(state_dir.rglob("*.part")) == []


async def test_a_run_with_faults_archives_every_call_byte_exact_into_the_bucket(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    faults = {FaultKind.RESET: Fault(rate=0.3), FaultKind.REC_503: Fault(rate=0.3),
              FaultKind.API_500: Fault(rate=0.2)}  # fmt: skip
    fake = await make_fake(small(faults=faults))
    result = await into(s3, fake, tmp_path / "state")
    assert result.exit_code == 0, result
    assert result.counts.archived == len(picked_ids(fake))
    assert_in_bucket(s3, fake, picked_ids(fake), tmp_path / "state")
    keys = s3.keys(PREFIX)
    assert f"{PREFIX}/.osvi-archiver/state.sqlite3" in keys  # the state's snapshot
    assert [k for k in keys if k.startswith(f"{PREFIX}/runs/")] == [
        f"{PREFIX}/runs/{result.run_id}.json"
    ]
    report = json.loads(s3.body(f"{PREFIX}/runs/{result.run_id}.json"))
    assert report["exit_code"] == 0
    assert report["settings"]["out_dir"] == s3.url(PREFIX)
    assert str(result.manifest) == f"{s3.url(PREFIX)}/manifest.json"
    # The lease is released at the end: the next run needs no wait.
    assert f"{PREFIX}/.osvi-archiver/lock" not in keys


async def test_recordings_over_one_part_go_up_as_multipart_uploads(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=2, size_min=17 << 20, size_max=18 << 20))
    result = await into(s3, fake, tmp_path / "state")
    assert result.exit_code == 0
    assert_in_bucket(s3, fake, picked_ids(fake), tmp_path / "state")
    for call_id in picked_ids(fake):
        key = f"{PREFIX}/{call_id}.mp4"
        etag = s3.client.head_object(Bucket=s3.bucket, Key=key)["ETag"]
        parts = -(
            -s3.client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"] // UPLOAD_CHUNK
        )
        assert etag.strip('"').endswith(f"-{parts}"), etag  # a multipart upload of that many


async def test_a_rerun_without_the_local_state_restores_the_snapshot_and_downloads_nothing(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    state_dir = tmp_path / "state"
    assert (await into(s3, fake, state_dir)).exit_code == 0
    downloads = fake.stats.requests["download"]
    shutil.rmtree(state_dir)  # a pod restarted on an empty disk

    again = await into(s3, fake, state_dir)

    assert again.exit_code == 0
    assert fake.stats.requests["download"] == downloads
    assert again.counts.already_archived == len(picked_ids(fake))
    assert_in_bucket(s3, fake, picked_ids(fake), state_dir)


async def test_without_state_or_snapshot_the_state_is_rebuilt_from_the_listing(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=8))
    state_dir = tmp_path / "state"
    first = await into(s3, fake, state_dir, with_metadata=True)
    assert first.exit_code == 0
    downloads = fake.stats.requests["download"]
    shutil.rmtree(state_dir)
    s3.delete(f"{PREFIX}/.osvi-archiver/state.sqlite3")

    again = await into(s3, fake, state_dir, with_metadata=True)

    assert again.exit_code == 0
    assert fake.stats.requests["download"] == downloads
    assert again.counts.already_archived == len(picked_ids(fake))
    calls = {c["call_id"]: c for c in manifest_in(s3, fake, state_dir)["calls"]}
    for call_id in picked_ids(fake):
        assert calls[call_id]["metadata_path"] == f"{call_id}.call.json"


async def test_a_recording_that_fails_verification_leaves_no_object_and_no_upload(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=6))
    cut, *good = picked_ids(fake)
    fake.config.faults[FaultKind.CUT] = Fault(calls=frozenset({cut}), times=None)

    result = await into(s3, fake, tmp_path / "state", max_attempts=2)

    assert result.exit_code == 1
    assert result.counts.failed == 1
    assert not [k for k in s3.keys(PREFIX) if cut in k]
    assert s3.uploads() == []
    assert_in_bucket(s3, fake, good, tmp_path / "state")


async def test_a_second_run_on_the_same_bucket_exits_75(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=3))
    dest = destination(s3, fake, tmp_path / "other-machine")
    holder = Lease(dest.store, ".osvi-archiver/lock", dest.where)
    holder.acquire()  # a run on another machine holds the lease
    try:
        with pytest.raises(ArchiveLocked, match="another osvi-archiver run holds this archive"):
            await into(s3, fake, tmp_path / "state")
    finally:
        holder.release()
    assert fake.stats.requests["download"] == 0
    assert (await into(s3, fake, tmp_path / "state")).exit_code == 0


async def test_a_lease_past_its_expiry_is_taken_over(
    make_fake: FakeFactory,
    s3: S3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock a killed run left, not renewed for a whole lease by the store's clock (its
    Last-Modified: a lease of 1 s here, whole seconds)."""
    fake = await make_fake(small(calls=3))
    monkeypatch.setattr("archiver.destinations.store.lease.LEASE_SECONDS", 1.0)
    dead = {"owner": "killed-pod", "host": "node-7", "pid": 1}
    s3.client.put_object(
        Bucket=s3.bucket, Key=f"{PREFIX}/.osvi-archiver/lock", Body=json.dumps(dead).encode()
    )
    with pytest.raises(ArchiveLocked, match="node-7"):
        await into(s3, fake, tmp_path / "state")
    await asyncio.sleep(2.1)
    result = await into(s3, fake, tmp_path / "state")
    assert result.exit_code == 0
    assert "took over the lease" in caplog.text
    assert f"{PREFIX}/.osvi-archiver/lock" not in s3.keys(PREFIX)


async def test_shards_keep_their_own_lease_state_and_manifest(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    from archiver.engine.assembly import RunOptions
    from archiver.engine.clocks import Clocks
    from archiver.engine.input_feed import run_input
    from archiver.engine.inputs import read_ids
    from archiver.engine.lifecycle import execute
    from archiver.monitoring.counts import NoProgress
    from tests.integration.archive_helpers import quick_sleep, settings_for

    fake = await make_fake(small(calls=10))
    ids = picked_ids(fake)
    for k in (0, 1):
        settings = settings_for(fake, s3.url(PREFIX), state_dir=tmp_path / f"pod-{k}",  # type: ignore[arg-type]
                                **s3.settings())  # fmt: skip
        text = "call_id\n" + "".join(f"{i}\n" for i in ids)
        options = RunOptions(shard=(k, 2), clocks=Clocks(sleep=quick_sleep))
        items = read_ids(io.BytesIO(text.encode()), "<test>")
        result = await execute(settings, run_input(items), NoProgress(), options)
        assert result.exit_code == 0
    keys = s3.keys(PREFIX)
    for label in ("shard-0-of-2", "shard-1-of-2"):
        assert f"{PREFIX}/.osvi-archiver/{label}/state.sqlite3" in keys
        assert f"{PREFIX}/manifest.{label}.json" in keys
    archived = [k for k in keys if k.endswith(".mp4")]
    assert sorted(archived) == sorted(f"{PREFIX}/{i}.mp4" for i in ids)
    dest = destination(s3, fake, tmp_path / "viewer")
    assert dest.states() == [(0, 2), (1, 2)]


async def test_a_store_that_refuses_stops_the_run_with_exit_4_and_a_clear_message(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=2))
    from archiver.errors import LocalError

    with pytest.raises(LocalError, match="does the bucket exist"):
        await archive(fake, "s3://no-such-bucket-here/x", state_dir=tmp_path / "s",  # type: ignore[arg-type]
                      **s3.settings())  # fmt: skip
    assert fake.stats.requests["download"] == 0


def test_store_urls_name_their_own_local_state() -> None:
    one, two = parse_store_url("s3://bucket/a"), parse_store_url("s3://bucket/b")
    assert one.key() != two.key()
    assert one.key().startswith("s3-bucket-a-")
    # The same bucket name at another endpoint (MinIO, then AWS) is another destination.
    assert one.key("http://127.0.0.1:9000|") != one.key("|")


async def test_objects_written_by_the_tool_are_whole_or_absent(s3: S3, tmp_path: Path) -> None:
    """write(): one PUT for a small file, a multipart upload for a large one."""
    store = obstore.store.S3Store(
        s3.bucket, prefix="w", endpoint=s3.endpoint, region="us-east-1",
        client_options={"allow_http": True},
    )  # fmt: skip
    dest = StoreDestination(parse_store_url(f"s3://{s3.bucket}/w"), store, tmp_path)
    dest.write("small.json", [b"{", b"}"], 0o600)
    big = [bytes([n]) * (1 << 20) for n in range(20)]
    dest.write("big.json", iter(big), 0o600)
    assert s3.body("w/small.json") == b"{}"
    assert s3.body("w/big.json") == b"".join(big)
    assert dest.read("small.json", 1) == b"{"
    assert dest.read("small.json", 100) == b"{}"
    assert dest.read("missing.json") is None
    assert sorted(dest.names("")) == ["big.json", "small.json"]


async def test_a_sync_into_the_bucket_keeps_its_watermark_across_machines(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    """The watermark lives in the state, so in its snapshot: a sync on an empty disk goes on
    from it (no --since needed) and downloads nothing again."""
    from datetime import UTC, datetime, timedelta

    from archiver.engine.sync import read_watermark
    from tests.integration.test_sync import fake_config, sync

    fake = await make_fake(fake_config(12))
    flags = {"state_dir": tmp_path / "pod-a", **s3.settings()}
    since = datetime.now(UTC) - timedelta(days=4)
    first = await sync(fake, s3.url(PREFIX), since=since, **flags)  # type: ignore[arg-type]
    assert first.exit_code == 0
    assert first.counts.archived == len(picked_ids(fake))
    downloads = fake.stats.requests["download"]
    dest = destination(s3, fake, tmp_path / "pod-b")
    with dest.viewing(None) as state:  # pod B has no local state: the snapshot's
        assert state is not None
        assert read_watermark(state) is not None
    again = await sync(fake, s3.url(PREFIX), state_dir=tmp_path / "pod-b", **s3.settings())  # type: ignore[arg-type]
    assert again.exit_code == 0
    assert fake.stats.requests["download"] == downloads


async def test_encryption_and_storage_class_reach_every_recording(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=3))
    result = await into(s3, fake, tmp_path / "state", store_sse="AES256",
                        store_storage_class="STANDARD_IA")  # fmt: skip
    assert result.exit_code == 0
    for call_id in picked_ids(fake):
        head = s3.client.head_object(Bucket=s3.bucket, Key=f"{PREFIX}/{call_id}.mp4")
        assert head["ServerSideEncryption"] == "AES256"
        assert head["StorageClass"] == "STANDARD_IA"
