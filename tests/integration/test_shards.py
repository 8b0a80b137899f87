"""N shards archiving into one shared folder at the same time (issue 6, SPEC §3 --shard):
each keeps its own state, lock, manifest and reports; `verify` covers them all."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from archiver.fake import FakeConfig, FakeOSVI
from tests.conftest import FakeFactory
from tests.ids import shard_of
from tests.integration.archive_helpers import manifest_of, picked_ids
from tests.integration.cli_helpers import env_for, finish, osvi, start_osvi


async def three_shards(fake: FakeOSVI, out: Path) -> list[int]:
    """Shards 0, 1 and 2 of 3 started together on one folder, the index from the environment
    as a Kubernetes Indexed Job gives it."""
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    processes = [
        await start_osvi(
            "run",
            "--out",
            str(out),
            "--shard",
            "auto/3",
            env=env_for(fake, JOB_COMPLETION_INDEX=str(k)),
            stdin=ids,
        )
        for k in range(3)
    ]
    done = await asyncio.gather(*(finish(p, deadline=60) for p in processes))
    for finished in done:
        assert finished.code == 0, finished.stderr
    return [f.code for f in done]


async def test_shards_share_one_folder_each_with_its_own_files(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=60, size_min=8 * 1024, size_max=64 * 1024))
    await three_shards(fake, tmp_path)
    # No whole-archive manifest or state: each shard wrote its own, and they never contended.
    assert not (tmp_path / "manifest.json").exists()
    state_dir = tmp_path / ".osvi-archiver"
    assert sorted(p.name for p in state_dir.iterdir()) == [f"shard-{k}-of-3" for k in range(3)]
    seen: set[str] = set()
    for k in range(3):
        manifest = manifest_of(tmp_path, (k, 3))
        ids = {c["call_id"] for c in manifest["calls"]}
        assert all(shard_of(i, 3) == k for i in ids)
        assert not ids & seen
        seen |= ids
        reports = list((tmp_path / "runs").glob(f"*.shard-{k}-of-3.json"))
        assert len(reports) == 1
        assert json.loads(reports[0].read_text())["shard"] == f"shard-{k}-of-3"
    assert seen == {c.call_id for c in fake.calls}  # every call has an outcome somewhere
    archived = {p.name.split(".")[0] for p in tmp_path.glob("*.mp4")}
    assert archived == set(picked_ids(fake))
    assert not list(tmp_path.glob("*.part"))


async def test_verify_covers_every_shard_of_a_shared_folder(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=30, size_min=8 * 1024, size_max=32 * 1024))
    await three_shards(fake, tmp_path)
    clean = await osvi("verify", "--out", str(tmp_path), "--json")
    assert clean.code == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["states"] == ["shard-0-of-3", "shard-1-of-3", "shard-2-of-3"]
    assert report["checked"] == len(picked_ids(fake))
    # Damage one recording of each shard, and leave a stray file no shard owns.
    victims = {shard_of(i, 3): i for i in picked_ids(fake)}
    for call_id in victims.values():
        with (tmp_path / f"{call_id}.mp4").open("r+b") as handle:
            handle.write(b"\xff")
    (tmp_path / "stray.mp4").write_bytes(b"x")
    damaged = await osvi("verify", "--out", str(tmp_path), "--json")
    assert damaged.code == 1
    problems = json.loads(damaged.stdout)["problems"]
    assert {p["call_id"] for p in problems if p["kind"] == "modified"} == set(victims.values())
    assert [p["path"] for p in problems if p["kind"] == "unexpected"] == ["stray.mp4"]


async def test_a_shard_of_a_shared_folder_has_its_own_lock(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    from archiver.destinations.lock import ArchiveLock

    fake = await make_fake(FakeConfig(calls=6, size_min=1024, size_max=2048))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    holder = ArchiveLock(tmp_path, (1, 2))
    holder.acquire()
    try:
        other = await osvi(
            "run", "--out", str(tmp_path), "--shard", "0/2", env=env_for(fake), stdin=ids
        )
        same = await osvi(
            "run", "--out", str(tmp_path), "--shard", "1/2", env=env_for(fake), stdin=ids
        )
    finally:
        holder.release()
    assert other.code == 0, other.stderr
    assert same.code == 75
    assert "shard-1-of-2" in same.stderr


async def test_a_run_split_another_way_says_it_does_not_see_the_shards(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=6, size_min=1024, size_max=2048))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    sharded = await osvi(
        "run", "--out", str(tmp_path), "--shard", "0/2", env=env_for(fake), stdin=ids
    )
    assert sharded.code == 0
    assert "split another way" not in sharded.stderr
    whole = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids)
    assert whole.code == 0
    assert "split another way (shard-0-of-2)" in whole.stderr
    # Both states own their files: verify finds nothing unexpected and nothing damaged.
    checked = await osvi("verify", "--out", str(tmp_path))
    assert checked.code == 0, checked.stdout


async def test_sync_keeps_a_watermark_per_shard(make_fake: FakeFactory, tmp_path: Path) -> None:
    fake = await make_fake(FakeConfig(calls=6, size_min=1024, size_max=2048))
    first = await osvi(
        "sync", "--out", str(tmp_path), "--shard", "1/2", "--since", "30d", env=env_for(fake)
    )
    assert first.code == 0, first.stderr
    assert (
        await osvi("sync", "--out", str(tmp_path), "--shard", "1/2", env=env_for(fake))
    ).code == 0
    other = await osvi("sync", "--out", str(tmp_path), "--shard", "0/2", env=env_for(fake))
    assert other.code == 2
    assert "(shard 0/2) has no sync watermark yet" in other.stderr


async def test_a_shard_names_its_part_files_and_removes_them_after_kill_9(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """Runs split different ways may overlap in calls; their .part files never collide."""
    slow = FakeConfig(calls=12, size_min=192 * 1024, size_max=256 * 1024, bandwidth=256 * 1024)
    fake = await make_fake(slow)
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    args = ("run", "--out", str(tmp_path), "--shard", "0/2")
    run = await start_osvi(*args, env=env_for(fake), stdin=ids)
    end = time.monotonic() + 20
    while not (parts := list(tmp_path.glob("*.part"))) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    run.kill()
    await run.wait()
    assert parts, "no download was in flight in time"
    assert all(p.name.endswith(".mp4.shard-0-of-2.part") for p in parts)
    again = await osvi(*args, env=env_for(fake), stdin=ids)
    assert again.code == 0, again.stderr
    assert list(tmp_path.glob("*.part")) == []
    mine = {i for i in picked_ids(fake) if shard_of(i, 2) == 0}
    assert {p.name.split(".")[0] for p in tmp_path.glob("*.mp4")} == mine
