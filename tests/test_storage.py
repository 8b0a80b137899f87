from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from archiver.errors import LocalError, UsageError
from archiver.storage import (
    FOLDER_MODE,
    PART_SUFFIX,
    DiskFull,
    PartFile,
    ensure_folder,
    layout_fields,
    local_error,
    part_path,
    remove_quietly,
    render_layout,
    write_atomic,
    write_atomic_json,
)

A = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"
FIELDS = {"call_id": A, "ext": ".mp4", "yyyy": "2026", "mm": "11", "dd": "05"}


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


# render_layout


def test_render_layout_default_is_call_id_and_extension() -> None:
    assert render_layout("{call_id}{ext}", FIELDS) == PurePosixPath(f"{A}.mp4")


def test_render_layout_nested_by_year_and_month() -> None:
    path = render_layout("{yyyy}/{mm}/{call_id}{ext}", FIELDS)
    assert path == PurePosixPath(f"2026/11/{A}.mp4")
    assert path.parts == ("2026", "11", f"{A}.mp4")


@pytest.mark.parametrize(
    "layout",
    ["/{call_id}{ext}", "/tmp/{call_id}{ext}", "//{call_id}{ext}"],
)
def test_render_layout_refuses_absolute_paths(layout: str) -> None:
    with pytest.raises(UsageError, match="not inside the archive"):
        render_layout(layout, FIELDS)


@pytest.mark.parametrize(
    "layout",
    [
        "../{call_id}{ext}",
        "{yyyy}/../../{call_id}{ext}",
        "{yyyy}/../{call_id}{ext}",
        "./{call_id}{ext}",
        "{yyyy}/./{call_id}{ext}",
    ],
)
def test_render_layout_refuses_dot_and_dot_dot_components(layout: str) -> None:
    with pytest.raises(UsageError, match="not inside the archive"):
        render_layout(layout, FIELDS)


@pytest.mark.parametrize("layout", ["{yyyy}//{call_id}{ext}", "{call_id}{ext}/", "{yyyy}/"])
def test_render_layout_refuses_empty_components(layout: str) -> None:
    with pytest.raises(UsageError):
        render_layout(layout, FIELDS)


def test_render_layout_refuses_an_empty_field_that_leaves_an_empty_component() -> None:
    with pytest.raises(UsageError):
        render_layout("{yyyy}/{agent_uuid}/{call_id}{ext}", {**FIELDS, "agent_uuid": ""})


def test_render_layout_refuses_a_field_value_that_climbs_out() -> None:
    with pytest.raises(UsageError):
        render_layout("{agent_uuid}/{call_id}{ext}", {**FIELDS, "agent_uuid": "../../etc"})


def test_render_layout_refuses_an_empty_result() -> None:
    with pytest.raises(UsageError):
        render_layout("{ext}", {"ext": ""})


def test_render_layout_refuses_unknown_placeholders_naming_them() -> None:
    with pytest.raises(UsageError, match=r"\{agent_uuid\}"):
        render_layout("{agent_uuid}/{call_id}{ext}", FIELDS)


def test_layout_fields_lists_the_placeholders() -> None:
    assert layout_fields("{yyyy}/{mm}/{call_id}{ext}") == {"yyyy", "mm", "call_id", "ext"}
    assert layout_fields("recordings/{call_id}{ext}") == {"call_id", "ext"}


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


def test_write_atomic_json_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "x.call.json"
    write_atomic_json(path, {"id": A, "n": [1, 2]}, 0o600)
    assert json.loads(path.read_text()) == {"id": A, "n": [1, 2]}


# PartFile


async def test_part_file_commit_renames_and_removes_the_part(tmp_path: Path) -> None:
    final = tmp_path / f"{A}.mp4"
    part = await PartFile.open(part_path(final), 0o600, append=False)
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
    part = await PartFile.open(part_path(final), file_mode, append=False)
    await part.write(b"audio", expected_total=5)
    await part.commit(final)
    assert mode_of(final) == file_mode


async def test_part_file_resume_appends_to_the_existing_part(tmp_path: Path) -> None:
    final = tmp_path / f"{A}.mp4"
    part_path(final).write_bytes(b"abc")
    part = await PartFile.open(part_path(final), 0o600, append=True)
    assert part.size == 3
    await part.write(b"def", expected_total=6)
    assert part.size == 6
    await part.commit(final)
    assert final.read_bytes() == b"abcdef"


async def test_part_file_start_over_truncates_the_existing_part(tmp_path: Path) -> None:
    final = tmp_path / f"{A}.mp4"
    part_path(final).write_bytes(b"stale bytes")
    part = await PartFile.open(part_path(final), 0o600, append=False)
    assert part.size == 0
    await part.write(b"new", expected_total=3)
    await part.commit(final)
    assert final.read_bytes() == b"new"


@pytest.mark.parametrize("append", [False, True])
async def test_part_file_left_with_a_looser_mode_ends_with_file_mode(
    tmp_path: Path, append: bool
) -> None:
    final = tmp_path / f"{A}.mp4"
    part_path(final).write_bytes(b"abc")
    part_path(final).chmod(0o644)  # left by an earlier run with a looser file_mode
    part = await PartFile.open(part_path(final), 0o600, append=append)
    await part.write(b"def", expected_total=None)
    await part.commit(final)
    assert mode_of(final) == 0o600


async def test_part_file_open_in_a_missing_folder_is_a_local_error(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="missing"):
        await PartFile.open(tmp_path / "missing" / "x.mp4.part", 0o600, append=False)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
async def test_part_file_write_on_a_full_disk_is_disk_full_with_bytes_needed() -> None:
    part = await PartFile.open(Path("/dev/full"), 0o600, append=False)
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
    tagged = part_path(Path("/a/c.mp4"), ".shard-1-of-4")
    assert tagged == Path("/a/c.mp4.shard-1-of-4.part")
    assert tagged.name.endswith(PART_SUFFIX)  # still the tool's own for verify
