"""`--dry-run` (SPEC §3, issue 7): says what would be downloaded or skipped and why; asks no
recording URL, downloads nothing, writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

from archiver.fake import FakeConfig, FakeOSVI
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import archive, picked_ids
from tests.integration.cli_helpers import osvi


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` with its size and mtime: any write shows. But
    SQLite's -wal/-shm companions, which any reader of a WAL database opens, and so the state
    folder that holds them."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if name.endswith(("-wal", "-shm")) or name == ".osvi-archiver":
                continue
            info = path.lstat()
            found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def lines_of(stdout: str) -> dict[str, tuple[str, str]]:
    """call id -> (action, reason) from the dry run's tab-separated lines."""
    rows = [line.split("\t") for line in stdout.splitlines() if line]
    return {row[1]: (row[0], row[2]) for row in rows if row[0] in ("download", "skip")}


async def test_dry_run_of_run_reports_each_call_and_touches_nothing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=10, size_min=2048, size_max=4096))
    ids = picked_ids(fake)
    out = tmp_path / "archive"
    done = await archive(fake, out, ids[:3])
    assert done.exit_code == 0
    (out / f"{ids[2]}.mp4").unlink()  # archived, but its file has gone since
    before_tree, before_recording = tree(out), fake.stats.requests["recording"]
    listed = tmp_path / "calls.csv"
    rows = [*ids[:5], ids[4], "not-a-uuid"]
    listed.write_text("call_id\n" + "".join(f"{r}\n" for r in rows))
    # No token needed: the dry run of `run` asks the API nothing.
    env = {"OSVI_BASE_URL": fake.base_url}
    dry = await osvi("run", "--dry-run", "--out", str(out), str(listed), env=env)
    assert dry.code == 1, dry.stderr  # the invalid row, as the run would
    said = lines_of(dry.stdout)
    assert said[ids[0]] == ("skip", "already archived")
    assert said[ids[1]] == ("skip", "already archived")
    assert said[ids[2]] == ("download", "archived, but its file is missing or changed")
    assert said[ids[3]] == ("download", "new")
    assert "skip\t" + ids[4] + "\tduplicate in the input" in dry.stdout
    assert "invalid\t" in dry.stdout
    assert "line 8" in dry.stdout
    assert "would download    3 (2 new, 1 archived" in dry.stderr
    assert "nothing was downloaded or written" in dry.stderr
    assert tree(out) == before_tree
    assert fake.stats.requests["recording"] == before_recording


async def test_dry_run_writes_no_folder_and_honours_force_and_shard(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=12, size_min=2048, size_max=4096))
    out = tmp_path / "never-created"
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    env = {"OSVI_BASE_URL": fake.base_url}
    dry = await osvi("run", "--dry-run", "--shard", "1/3", "--out", str(out), env=env, stdin=ids)
    assert dry.code == 0, dry.stderr
    assert not out.exists()
    said = lines_of(dry.stdout)
    assert said
    assert all(reason == ("download", "new") for reason in said.values())
    assert "other shards" in dry.stderr
    archived = tmp_path / "a"
    await archive(fake, archived, picked_ids(fake)[:2])
    forced = await osvi(
        "run", "--dry-run", "--force", "--out", str(archived), "-", env=env,
        stdin=picked_ids(fake)[0].encode(),
    )  # fmt: skip
    assert lines_of(forced.stdout) == {picked_ids(fake)[0]: ("download", "archived, --force")}


async def test_dry_run_of_sync_lists_but_asks_no_recording_url(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake: FakeOSVI = await make_fake(FakeConfig(calls=20, size_min=2048, size_max=4096))
    out = tmp_path / "archive"
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    dry = await osvi("sync", "--dry-run", "--since", "30d", "--out", str(out), env=env)
    assert dry.code == 0, dry.stderr
    assert fake.stats.requests["calls"] >= 1
    assert fake.stats.requests["recording"] == 0
    assert fake.stats.requests["download"] == 0
    assert not out.exists()
    picked = {c.call_id for c in fake.calls if c.status == "picked"}
    assert set(lines_of(dry.stdout)) == picked
