"""`osvi-archiver check` on a bucket (issue 20): the archive's state is its snapshot, read from
another machine's empty disk; nothing is written into the bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.fake import Fault, FaultKind
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import S3
from tests.integration.cli_helpers import env_for, osvi
from tests.integration.test_check import checked
from tests.integration.test_sync import fake_config, picked_between, sync

PREFIX = "archive"


async def test_check_a_bucket_clean_then_with_a_missing_and_a_failed_call(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(40))
    now = datetime.now(UTC)
    since = now - timedelta(days=3)
    broken = sorted(picked_between(fake, since, now))[0]
    fake.config.faults = {FaultKind.NOT_AUDIO: Fault(calls=frozenset([broken]), times=None)}
    flags = {"state_dir": tmp_path / "pod-a", **s3.settings()}
    synced = await sync(fake, s3.url(PREFIX), since=since, **flags)  # type: ignore[arg-type]
    assert synced.exit_code == 1  # the broken call
    keys = s3.keys()
    elsewhere = {"state_dir": tmp_path / "pod-b", **s3.settings()}  # another machine
    report = await checked(fake, s3.url(PREFIX), since, **elsewhere)
    assert report.exit_code == 1
    assert [(m.call_id, m.why, m.kind) for m in report.missing] == [(broken, "failed", "not_audio")]
    added = fake.add_calls(8, created_at=now - timedelta(days=1))
    late = {c.call_id for c in added if c.status == "picked"}
    again = await checked(fake, s3.url(PREFIX), since, **elsewhere)
    assert {m.call_id for m in again.missing} == {broken} | late
    assert s3.keys() == keys  # read-only: not a key added, not a lease taken

    fake.config.faults = {}
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "pod-b"),
                  OSVI_MAX_REQUESTS_PER_SECOND="500", **s3.env())  # fmt: skip
    found = await osvi("check", "--out", s3.url(PREFIX), "--since", "3d", "--ids", env=env)
    assert found.code == 1, found.stderr
    assert set(found.stdout.split()) == {broken} | late
    repaired = await osvi("run", "--out", s3.url(PREFIX), "-", env=env,
                          stdin=found.stdout.encode())  # fmt: skip
    assert repaired.code == 0, repaired.stderr
    clean = await checked(fake, s3.url(PREFIX), since, **elsewhere)
    assert clean.exit_code == 0
    assert clean.missing == []
