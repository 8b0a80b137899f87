"""What a bucket destination must never do, whatever the store, a snapshot or a host sends:
trust another destination's state, write after losing its lease, delete outside its folder,
or stop on a host's odd header."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from archiver.destinations.store import lease as lease_module
from archiver.fake import FakeConfig
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import S3
from tests.destinations.store.test_store_run import PREFIX, assert_in_bucket, into, small
from tests.integration.archive_helpers import picked_ids


async def test_a_local_state_of_another_destination_is_never_trusted(
    make_fake: FakeFactory, s3: S3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bucket emptied and reused (or the same name at another endpoint): the local state
    says archived, the bucket holds nothing. Every call is downloaded again."""
    fake = await make_fake(small(calls=6))
    state = tmp_path / "state"
    assert (await into(s3, fake, state)).exit_code == 0
    for key in s3.keys(""):
        s3.delete(key)
    again = await into(s3, fake, state)
    assert again.exit_code == 0
    assert again.counts.archived == len(picked_ids(fake))
    assert "set aside" in caplog.text
    assert_in_bucket(s3, fake, picked_ids(fake), state)


async def test_a_local_state_older_than_the_snapshot_gives_way_to_it(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    """Machine A ran, then machine B: A's next run takes B's snapshot, not its own state."""
    fake = await make_fake(small(calls=10))
    first, rest = picked_ids(fake)[:3], picked_ids(fake)[3:]
    assert (await into(s3, fake, tmp_path / "a", ids=first)).exit_code == 0
    assert (await into(s3, fake, tmp_path / "b", ids=rest)).exit_code == 0
    downloads = fake.stats.requests["download"]
    again = await into(s3, fake, tmp_path / "a")
    assert again.exit_code == 0
    assert fake.stats.requests["download"] == downloads
    assert again.counts.already_archived == len(picked_ids(fake))


async def test_a_run_that_loses_its_lease_stops_with_75_and_writes_nothing_more(
    make_fake: FakeFactory, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "LEASE_SECONDS", 0.6)
    fake = await make_fake(FakeConfig(calls=12, size_min=2 << 20, size_max=3 << 20,
                                      bandwidth=1 << 20))  # fmt: skip
    run = asyncio.ensure_future(into(s3, fake, tmp_path / "state", concurrency=2))
    lock = f"{PREFIX}/.osvi-archiver/lock"
    for _ in range(200):
        await asyncio.sleep(0.05)
        if lock in s3.keys(PREFIX):
            break
    await asyncio.sleep(0.3)
    taker = {"owner": "another-run", "host": "elsewhere", "pid": 2, "expires_at": 4e9}
    s3.client.put_object(Bucket=s3.bucket, Key=lock, Body=json.dumps(taker).encode())
    result = await asyncio.wait_for(run, 30)
    assert result.exit_code == 75
    keys = s3.keys(PREFIX)
    assert not [k for k in keys if "/runs/" in k or k.endswith("manifest.json")]
    assert f"{PREFIX}/.osvi-archiver/state.sqlite3" not in keys
    assert json.loads(s3.body(lock))["owner"] == "another-run"  # the new holder's, untouched
    assert s3.uploads() == []


async def test_a_snapshot_cannot_make_the_tool_delete_a_file_elsewhere(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(small(calls=3))
    state_dir = tmp_path / "state"
    assert (await into(s3, fake, state_dir)).exit_code == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    # A snapshot that names a file outside the archive as a `.part` to clean up.
    db_path = next(state_dir.rglob("state.sqlite3"))
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO parts (call_id, path) VALUES ('x', ?)", (str(victim),))
    db.execute("INSERT INTO parts (call_id, path) VALUES ('y', '../../victim.txt.part')")
    db.commit()
    db.close()
    s3.client.upload_file(str(db_path), s3.bucket, f"{PREFIX}/.osvi-archiver/state.sqlite3",
                          ExtraArgs={"Metadata": {"osvisnapshot": "forged"}})  # fmt: skip
    shutil.rmtree(state_dir)
    assert (await into(s3, fake, state_dir)).exit_code == 0
    assert victim.read_text() == "keep me"


def test_a_hostile_content_type_is_not_sent_to_the_store(s3: S3, tmp_path: Path) -> None:
    """aiohttp hands on `audio/mp4\x7f` from a recording host; as an object's header it made
    obstore's request signing panic (the whole run stopped). Only a plain media type goes."""
    from archiver.config.out_dir import parse_store_url
    from archiver.destinations.base import Stored
    from archiver.destinations.store.bucket import StoreDestination

    dest = StoreDestination(parse_store_url(f"s3://{s3.bucket}/p"), None, tmp_path)
    for hostile in ("audio/mp4\x7f", "audio/mp4\r\nX-Amz-Acl: public-read", "a" * 300, "x"):
        attributes = dest.attributes(Stored("id", "0" * 64, 1, hostile))
        assert "Content-Type" not in attributes, hostile
    assert dest.attributes(Stored("id", "0" * 64, 1, "audio/mp4"))["Content-Type"] == "audio/mp4"


async def test_a_look_at_the_bucket_uses_the_snapshot_when_it_is_newer(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    """verify and --dry-run on machine A after machine B ran: B's snapshot, not A's state."""
    from tests.destinations.store.test_store_run import destination

    fake = await make_fake(small(calls=8))
    first, rest = picked_ids(fake)[:2], picked_ids(fake)[2:]
    assert (await into(s3, fake, tmp_path / "a", ids=first)).exit_code == 0
    assert (await into(s3, fake, tmp_path / "b", ids=rest)).exit_code == 0
    with destination(s3, fake, tmp_path / "a").viewing(None) as state:
        assert state is not None
        archived = {r.call_id for r in state.calls() if r.status == "archived"}
    assert archived == set(picked_ids(fake))
