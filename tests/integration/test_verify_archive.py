"""`verify` over an archive a real run made against the fake service (SPEC §2, §7)."""

from __future__ import annotations

from pathlib import Path

from archiver.destinations.verify_folder import verify_archive
from archiver.fake import FakeConfig
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import archive, manifest_of, picked_ids


def small(calls: int) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8 * 1024, size_max=64 * 1024)


async def test_a_fresh_archive_verifies_clean_with_every_recording_read(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(12))
    result = await archive(fake, tmp_path, layout="calls/{call_id}/recording{ext}")
    assert result.exit_code == 0, result.error
    archived = [c for c in manifest_of(tmp_path)["calls"] if c["status"] == "archived"]
    assert len(archived) == len(picked_ids(fake)) > 0

    report = verify_archive(tmp_path)

    assert report.ok, report.problems
    assert report.checked == len(archived)
    assert report.bytes_checked == sum(c["bytes"] for c in archived)


async def test_damage_to_a_real_archive_is_reported_call_by_call(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(12))
    await archive(fake, tmp_path)
    first, second, third = sorted(
        (c for c in manifest_of(tmp_path)["calls"] if c["status"] == "archived"),
        key=lambda c: c["path"],
    )[:3]
    (tmp_path / first["path"]).unlink()
    with (tmp_path / second["path"]).open("r+b") as handle:
        handle.truncate(100)
    with (tmp_path / third["path"]).open("r+b") as handle:
        handle.seek(50)
        byte = handle.read(1)
        handle.seek(50)
        handle.write(bytes([byte[0] ^ 0xFF]))
    (tmp_path / "stray.mp4").write_bytes(b"not archived here")

    report = verify_archive(tmp_path)

    assert [(p.kind, p.path, p.call_id) for p in report.problems] == [
        ("missing", first["path"], first["call_id"]),
        ("truncated", second["path"], second["call_id"]),
        ("modified", third["path"], third["call_id"]),
        ("unexpected", "stray.mp4", None),
    ]


async def test_a_second_run_leaves_an_archive_that_still_verifies(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(8))
    await archive(fake, tmp_path)
    verify_archive(tmp_path)  # a verify between runs does not get in the next run's way
    second = await archive(fake, tmp_path)
    assert second.exit_code == 0, second.error
    assert verify_archive(tmp_path).ok
