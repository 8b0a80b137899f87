from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.names import PART_SUFFIX, part_path
from archiver.archive.storage import (
    FOLDER_MODE,
    PartFile,
    ensure_folder,
    local_error,
    remove_quietly,
    write_atomic,
)
from archiver.errors import DiskFull, LocalError

A = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def strict_umask() -> Iterator[int]:
    """A cron job's umask is often 077: the modes we ask for must hold regardless."""
    old = os.umask(0o077)
    try:
        yield 0o077
    finally:
        os.umask(old)


def test_part_path_is_beside_the_final_name() -> None:
    assert part_path(Path("/a/b/c.mp4")) == Path("/a/b/c.mp4.part")


# ensure_folder


def test_ensure_folder_makes_an_owner_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    ensure_folder(folder)
    assert folder.is_dir()
    assert mode_of(folder) == FOLDER_MODE == 0o700


def test_ensure_folder_makes_missing_parents_owner_only_too(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "2026" / "11"
    ensure_folder(folder)
    assert {p.name: mode_of(p) for p in (folder, folder.parent, folder.parent.parent)} == {
        "11": 0o700,
        "2026": 0o700,
        "out": 0o700,
    }


def test_ensure_folder_accepts_an_existing_folder(tmp_path: Path) -> None:
    ensure_folder(tmp_path / "x")
    (tmp_path / "x" / "keep").write_text("kept")
    ensure_folder(tmp_path / "x")
    assert (tmp_path / "x" / "keep").read_text() == "kept"


def test_ensure_folder_maps_os_errors_to_local_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LocalError, match=str(tmp_path / "file")):
        ensure_folder(tmp_path / "file" / "sub")


# local_error


def test_local_error_maps_enospc_to_disk_full_with_path_and_bytes() -> None:
    error = local_error(OSError(errno.ENOSPC, "No space left on device"), Path("/a/b.mp4"), 1234)
    assert isinstance(error, DiskFull)
    assert isinstance(error, LocalError)
    assert error.exit_code == 4
    assert "/a/b.mp4" in str(error)
    assert "1,234" in str(error)
    assert "disk full" in str(error)


def test_local_error_disk_full_without_a_known_size_says_no_number() -> None:
    error = local_error(OSError(errno.ENOSPC, "No space left on device"), Path("/a/b.mp4"))
    assert isinstance(error, DiskFull)
    assert "bytes" not in str(error)


def test_local_error_maps_a_quota_error_to_disk_full() -> None:
    error = local_error(OSError(errno.EDQUOT, "Disk quota exceeded"), Path("/a/b.mp4"), 10)
    assert isinstance(error, DiskFull)


@pytest.mark.parametrize(
    ("code", "strerror"),
    [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")],
)
def test_local_error_maps_unwritable_folders_with_path_and_reason(code: int, strerror: str) -> None:
    error = local_error(OSError(code, strerror), Path("/archive/x.mp4"))
    assert type(error) is LocalError
    assert error.exit_code == 4
    assert "/archive/x.mp4" in str(error)
    assert strerror in str(error)
    assert "permissions" in str(error)


def test_local_error_keeps_the_reason_of_other_os_errors() -> None:
    error = local_error(OSError(errno.EIO, "Input/output error"), Path("/archive/x.mp4"))
    assert type(error) is LocalError
    assert "/archive/x.mp4" in str(error)
    assert "Input/output error" in str(error)


# write_atomic


def test_write_atomic_writes_all_chunks_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_atomic(path, iter([b"one ", b"two ", b"three"]), 0o600)
    assert path.read_bytes() == b"one two three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


@pytest.mark.usefixtures("strict_umask")
@pytest.mark.parametrize("file_mode", [0o600, 0o640, 0o644])
def test_write_atomic_sets_the_file_mode_exactly(tmp_path: Path, file_mode: int) -> None:
    path = tmp_path / "report.json"
    write_atomic(path, [b"{}"], file_mode)
    assert mode_of(path) == file_mode


def test_write_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old")
    write_atomic(path, [b"new"], 0o600)
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_write_atomic_creates_missing_folders_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1.json"
    write_atomic(path, [b"{}"], 0o600)
    assert path.read_bytes() == b"{}"
    assert mode_of(tmp_path / "runs") == 0o700


def test_write_atomic_failing_chunks_leave_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old and whole")

    def chunks() -> Iterator[bytes]:
        yield b"new but "
        raise RuntimeError("state read failed half way")

    with pytest.raises(RuntimeError, match="half way"):
        write_atomic(path, chunks(), 0o600)
    assert path.read_bytes() == b"old and whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_write_atomic_os_error_becomes_local_error_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match=str(path)):
        write_atomic(path, chunks(), 0o600)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


# PartFile


async def test_part_file_commit_renames_and_removes_the_part(tmp_path: Path) -> None:
    final = tmp_path / f"{A}.mp4"
    part = await PartFile.create(part_path(final), 0o600)
    await part.write(b"abc", expected_total=6)
    await part.write(b"def", expected_total=6)
    assert part.size == 6
    await part.commit(final)
    assert final.read_bytes() == b"abcdef"
    assert not part_path(final).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{A}.mp4"]


@pytest.mark.usefixtures("strict_umask")
@pytest.mark.parametrize("file_mode", [0o600, 0o640, 0o644])
async def test_part_file_creates_the_file_with_file_mode_whatever_the_umask(
    tmp_path: Path, file_mode: int
) -> None:
    final = tmp_path / f"{A}.mp4"
    part = await PartFile.create(part_path(final), file_mode)
    await part.write(b"audio", expected_total=5)
    await part.commit(final)
    assert mode_of(final) == file_mode


async def test_a_stale_part_is_replaced_by_a_new_empty_file(tmp_path: Path) -> None:
    final = tmp_path / f"{A}.mp4"
    part_path(final).write_bytes(b"stale bytes")
    part_path(final).chmod(0o644)  # left by an earlier run with a looser file_mode
    part = await PartFile.create(part_path(final), 0o600)
    assert part.size == 0
    await part.write(b"new", expected_total=3)
    await part.commit(final)
    assert final.read_bytes() == b"new"
    assert mode_of(final) == 0o600


async def test_a_symlink_at_the_part_path_is_never_written_through(tmp_path: Path) -> None:
    """A link planted at `<final>.part` pointing outside the archive: the target stays as it
    was (not truncated, filled or chmod'ed); the link is replaced by the tool's own file."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    outside.chmod(0o644)
    archive = tmp_path / "archive"
    archive.mkdir()
    final = archive / f"{A}.mp4"
    part_path(final).symlink_to(outside)
    part = await PartFile.create(part_path(final), 0o600)
    await part.write(b"audio", expected_total=5)
    await part.commit(final)
    assert outside.read_bytes() == b"precious"
    assert mode_of(outside) == 0o644
    assert final.read_bytes() == b"audio"
    assert not final.is_symlink()


async def test_part_file_create_in_a_missing_folder_is_a_local_error(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="missing"):
        await PartFile.create(tmp_path / "missing" / "x.mp4.part", 0o600)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_part_file_write_on_a_full_disk_is_disk_full_with_bytes_needed() -> None:
    part = PartFile(Path("/dev/full"), open("/dev/full", "wb"), 0)  # noqa: SIM115, ASYNC230
    try:
        with pytest.raises(DiskFull) as caught:
            await part.write(b"\0" * (1 << 20), expected_total=5_000_000)
    finally:
        with contextlib.suppress(OSError):
            await part.close()
    assert "/dev/full" in str(caught.value)
    assert "5,000,000" in str(caught.value)


async def test_remove_quietly_removes_a_part_and_ignores_a_missing_one(tmp_path: Path) -> None:
    part = tmp_path / "x.mp4.part"
    part.write_bytes(b"partial")
    await remove_quietly(part)
    assert not part.exists()
    await remove_quietly(part)
    assert not part.exists()


def test_a_shard_tags_its_part_files() -> None:
    tagged = part_path(Path("/a/c.mp4"), (1, 4))
    assert tagged == Path("/a/c.mp4.shard-1-of-4.part")
    assert tagged.name.endswith(PART_SUFFIX)  # still the tool's own for verify


def test_each_new_folder_is_fsynced_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new folder's entry is in its parent: without the parent's fsync a power cut can
    lose the folder and every file renamed into it since."""
    from archiver.archive import storage

    synced: list[Path] = []
    original = storage.fsync_folder

    def fsync_folder(folder: Path) -> None:
        synced.append(folder)
        original(folder)

    monkeypatch.setattr(storage, "fsync_folder", fsync_folder)
    (tmp_path / "a").mkdir()
    ensure_folder(tmp_path / "a" / "b" / "c")
    assert synced == [tmp_path / "a", tmp_path / "a" / "b"]
    synced.clear()
    ensure_folder(tmp_path / "a" / "b" / "c")  # there already: nothing to do
    assert synced == []


def test_stale_temps_of_one_name_are_removed_and_others_kept(tmp_path: Path) -> None:
    from archiver.archive.storage import remove_stale_temps

    ours = tmp_path / ".manifest.json.k3j4h5.tmp"
    theirs = tmp_path / ".manifest.shard-1-of-2.json.a1b2c3.tmp"
    other = tmp_path / ".other.json.zzz.tmp"
    for path in (ours, theirs, other):
        path.write_text("{")
    assert remove_stale_temps(tmp_path, "manifest.json") == 1
    assert not ours.exists()
    assert theirs.exists()
    assert other.exists()
    assert remove_stale_temps(tmp_path, "*.json", unless=".shard-") == 1
    assert theirs.exists()
    assert not other.exists()
    assert remove_stale_temps(tmp_path, "*.json", older_than=3600) == 0  # too recent
    assert remove_stale_temps(tmp_path / "missing", "*") == 0


async def test_a_part_file_cancelled_while_its_thread_opens_it_is_closed_not_leaked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped as a download starts: the thread still opens the `.part`, and its
    BufferedWriter, handed to a cancelled await, leaked its descriptor (ResourceWarning)."""
    entered, release = threading.Event(), threading.Event()
    real_open = os.open

    def slow_open(*args: Any, **kwargs: Any) -> int:
        entered.set()
        release.wait(5)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(os, "open", slow_open)
    creating = asyncio.create_task(PartFile.create(tmp_path / "a.mp4.part", 0o600))
    await asyncio.to_thread(entered.wait, 5)
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    monkeypatch.setattr(os, "open", real_open)
    opened = len(os.listdir("/proc/self/fd"))
    release.set()
    for _ in range(100):  # until the thread opened the file and its result was closed
        await asyncio.sleep(0.01)
        if (tmp_path / "a.mp4.part").exists() and len(os.listdir("/proc/self/fd")) <= opened:
            break
    gc.collect()
    assert (tmp_path / "a.mp4.part").exists()
    assert len(os.listdir("/proc/self/fd")) <= opened
