from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from archiver.archive.names import STATE_DIR
from archiver.destinations.verify_folder import (
    MAX_PROBLEMS_SHOWN,
    Problem,
    VerifyReport,
    render_text,
    report_json,
    verify_archive,
)
from archiver.errors import LocalError
from archiver.state.call_records import CallRecord
from archiver.state.database import State

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
FAILED = "44444444-4444-4444-8444-444444444444"
PENDING = "55555555-5555-4555-8555-555555555555"
FILES = {
    A: ("2026/11/a.mp4", b"recording A " * 100),
    B: ("2026/11/b.wav", b"recording B " * 50),
    C: ("c.mp4", b"C" * 10),
}


def archived(call_id: str, path: str, data: bytes) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        status="archived",
        path=path,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_type="audio/mp4",
        archived_at="2026-11-05T10:00:00.000000Z",
        attempts=1,
        run_id="run-1",
    )


def make_archive(out_dir: Path, files: dict[str, tuple[str, bytes]] = FILES) -> Path:
    """An archive as a run leaves it: files on disk, their calls archived in the state, plus a
    failed and a pending call that have no file."""
    with State(out_dir) as state:
        for call_id, (path, data) in files.items():
            (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / path).write_bytes(data)
            state.claim(call_id, "run-1")
            state.record(archived(call_id, path, data))
        for call_id, status in ((FAILED, "failed"), (PENDING, "pending")):
            state.claim(call_id, "run-1")
            state.record(CallRecord(call_id, status, error_kind="x", error_message="y"))
    (out_dir / "manifest.json").write_text("{}")
    (out_dir / "runs").mkdir()
    (out_dir / "runs" / "run-1.json").write_text("{}")
    return out_dir


def kinds(report: VerifyReport) -> list[tuple[str, str]]:
    return [(p.kind, p.path) for p in report.problems]


def unexpected_paths(report: VerifyReport) -> list[str]:
    return [p.path for p in report.problems if p.kind == "unexpected"]


# archived files


def test_an_untouched_archive_is_ok_and_every_archived_file_is_read(tmp_path: Path) -> None:
    report = verify_archive(make_archive(tmp_path))
    assert report.ok
    assert report.problems == []
    assert report.checked == 3
    assert report.bytes_checked == sum(len(data) for _, data in FILES.values())


def test_a_deleted_file_is_missing(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "2026/11/a.mp4").unlink()
    report = verify_archive(tmp_path)
    assert report.problems == [Problem("missing", "2026/11/a.mp4", A, "no file at this path")]
    assert report.checked == 3
    assert not report.ok


def test_a_deleted_folder_makes_its_files_missing(tmp_path: Path) -> None:
    make_archive(tmp_path)
    for name in ("a.mp4", "b.wav"):
        (tmp_path / "2026/11" / name).unlink()
    (tmp_path / "2026/11").rmdir()
    (tmp_path / "2026/11").write_text("a file where a folder was")
    report = verify_archive(tmp_path)
    assert kinds(report) == [
        ("missing", "2026/11/a.mp4"),
        ("missing", "2026/11/b.wav"),
        ("unexpected", "2026/11"),
    ]


def test_a_shorter_file_is_truncated_and_not_hashed(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "c.mp4").write_bytes(b"C" * 4)
    report = verify_archive(tmp_path)
    assert report.problems == [Problem("truncated", "c.mp4", C, "expected 10 bytes, found 4")]
    assert report.bytes_checked == sum(len(FILES[i][1]) for i in (A, B))


def test_an_emptied_file_is_truncated(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "c.mp4").write_bytes(b"")
    assert kinds(verify_archive(tmp_path)) == [("truncated", "c.mp4")]


def test_one_flipped_byte_of_the_same_size_is_modified(tmp_path: Path) -> None:
    make_archive(tmp_path)
    path = tmp_path / "2026/11/b.wav"
    data = bytearray(path.read_bytes())
    data[300] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_archive(tmp_path)
    assert report.problems == [Problem("modified", "2026/11/b.wav", B, "sha256 differs")]


def test_appended_bytes_are_modified(tmp_path: Path) -> None:
    make_archive(tmp_path)
    with (tmp_path / "c.mp4").open("ab") as handle:
        handle.write(b"tail")
    report = verify_archive(tmp_path)
    assert report.problems == [Problem("modified", "c.mp4", C, "expected 10 bytes, found 14")]


def test_a_file_larger_than_the_read_size_is_hashed_whole(tmp_path: Path) -> None:
    big = bytes(range(256)) * (10 * 1024 + 7)  # about 2.5 MiB: three reads
    make_archive(tmp_path, {A: ("big.mp4", big)})
    assert verify_archive(tmp_path).bytes_checked == len(big)
    changed = bytearray(big)
    changed[-1] ^= 0xFF  # in the last, partial read
    (tmp_path / "big.mp4").write_bytes(bytes(changed))
    assert kinds(verify_archive(tmp_path)) == [("modified", "big.mp4")]


def test_a_symlink_at_an_archived_path_is_modified_and_not_followed(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "elsewhere.mp4").write_bytes(FILES[C][1])  # the right bytes, but elsewhere
    (tmp_path / "c.mp4").unlink()
    (tmp_path / "c.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    report = verify_archive(tmp_path)
    assert report.problems[0] == Problem(
        "modified", "c.mp4", C, "a symbolic link, not the archived file"
    )
    # Reported once: the link is the archived call's path, not an unexpected file.
    assert unexpected_paths(report) == ["elsewhere.mp4"]


def test_a_folder_or_fifo_at_an_archived_path_is_modified_without_hanging(
    tmp_path: Path,
) -> None:
    make_archive(tmp_path)
    (tmp_path / "c.mp4").unlink()
    os.mkfifo(tmp_path / "c.mp4")
    (tmp_path / "2026/11/a.mp4").unlink()
    (tmp_path / "2026/11/a.mp4").mkdir()
    report = verify_archive(tmp_path)
    assert report.problems == [
        Problem("modified", "2026/11/a.mp4", A, "not a regular file"),
        Problem("modified", "c.mp4", C, "not a regular file"),
    ]


# files no archived call owns


def test_a_file_no_call_owns_is_unexpected_wherever_it_is(tmp_path: Path) -> None:
    make_archive(tmp_path)
    for extra in ("notes.txt", "2026/11/copy of a.mp4", "2026/.DS_Store", "deep/er/x"):
        (tmp_path / extra).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / extra).write_text("?")
    report = verify_archive(tmp_path)
    assert report.problems == [
        Problem("unexpected", "2026/.DS_Store", None, "no archived call owns this file"),
        Problem("unexpected", "2026/11/copy of a.mp4", None, "no archived call owns this file"),
        Problem("unexpected", "deep/er/x", None, "no archived call owns this file"),
        Problem("unexpected", "notes.txt", None, "no archived call owns this file"),
    ]


def test_the_file_of_a_call_that_is_not_archived_is_unexpected(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / f"{FAILED}.mp4").write_bytes(b"left over")
    assert unexpected_paths(verify_archive(tmp_path)) == [f"{FAILED}.mp4"]


def test_the_tools_own_files_are_not_unexpected(tmp_path: Path) -> None:
    make_archive(tmp_path)
    own = [
        f"{STATE_DIR}/anything",
        "runs/run-2.json",
        "runs/sub/whatever",
        "2026/11/a.mp4.part",  # a run in flight
        "new/d.mp4.part",
        ".manifest.json.k2j3h4.tmp",  # storage.write_atomic's temp files
        "2026/11/.a.call.json.x9y8.tmp",
    ]
    for path in own:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert verify_archive(tmp_path).ok


def test_sidecars_of_archived_recordings_are_not_unexpected(tmp_path: Path) -> None:
    make_archive(tmp_path)
    for path in ("2026/11/a.call.json", "2026/11/a.transcript.json", "c.call.json"):
        (tmp_path / path).write_text("{}")
    (tmp_path / "c.mp4").unlink()  # a sidecar stays its call's even when the recording is gone
    assert kinds(verify_archive(tmp_path)) == [("missing", "c.mp4")]


@pytest.mark.parametrize(
    "sidecar",
    [
        "2026/11/z.call.json",  # no such recording
        "2026/z.transcript.json",
        "a.call.json",  # a.mp4 is archived in 2026/11, not here
        "2026/11/a.mp4.call.json",  # the stem drops the recording's extension
        "2026/11/a.notes.json",
    ],
)
def test_a_sidecar_of_no_archived_recording_is_unexpected(tmp_path: Path, sidecar: str) -> None:
    make_archive(tmp_path)
    (tmp_path / sidecar).write_text("{}")
    assert unexpected_paths(verify_archive(tmp_path)) == [sidecar]


def test_only_the_top_level_manifest_runs_and_state_folder_are_the_tools(tmp_path: Path) -> None:
    make_archive(tmp_path)
    for path in ("2026/manifest.json", "2026/runs/r.json", f"2026/{STATE_DIR}/state.sqlite3"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert unexpected_paths(verify_archive(tmp_path)) == [
        f"2026/{STATE_DIR}/state.sqlite3",
        "2026/manifest.json",
        "2026/runs/r.json",
    ]


def test_links_are_unexpected_and_never_followed(tmp_path: Path) -> None:
    make_archive(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.mp4").write_text("not ours")
    (tmp_path / "linked-folder").symlink_to(outside)
    (tmp_path / "linked-file.mp4").symlink_to(tmp_path / "c.mp4")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    report = verify_archive(tmp_path)
    assert unexpected_paths(report) == ["dangling", "linked-file.mp4", "linked-folder"]
    assert {p.detail for p in report.problems} == {
        "a symbolic link no archived call owns (not followed)"
    }


def test_empty_folders_are_not_problems(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "2027/01").mkdir(parents=True)
    assert verify_archive(tmp_path).ok


# the state


def test_a_folder_with_no_state_is_a_local_error(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(LocalError, match="no osvi-archiver state"):
        verify_archive(tmp_path)
    assert not (tmp_path / STATE_DIR).exists()


def test_an_archive_with_no_archived_calls_is_ok_and_checks_nothing(tmp_path: Path) -> None:
    make_archive(tmp_path, {})
    report = verify_archive(tmp_path)
    assert (report.ok, report.checked, report.bytes_checked) == (True, 0, 0)


def test_progress_gets_the_count_of_files_checked_after_each_one(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "c.mp4").unlink()
    seen: list[int] = []
    verify_archive(tmp_path, progress=seen.append)
    assert seen == [1, 2, 3]


def snapshot(out_dir: Path) -> dict[str, tuple[int, int]]:
    """Every path under out_dir with its size and mtime, except SQLite's -shm and -wal files
    and the state folder's own entry, which they would change."""
    return {
        str(path.relative_to(out_dir)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in out_dir.rglob("*")
        if not path.name.endswith(("-shm", "-wal")) and path.name != STATE_DIR
    }


def test_verify_writes_nothing(tmp_path: Path) -> None:
    make_archive(tmp_path)
    (tmp_path / "c.mp4").write_bytes(b"short")
    (tmp_path / "extra.txt").write_text("?")
    before = snapshot(tmp_path)
    state_bytes = (tmp_path / STATE_DIR / "state.sqlite3").read_bytes()
    assert not verify_archive(tmp_path).ok
    assert snapshot(tmp_path) == before
    assert (tmp_path / STATE_DIR / "state.sqlite3").read_bytes() == state_bytes


def test_verify_creates_nothing_in_the_state_folder_but_sqlites_companions(
    tmp_path: Path,
) -> None:
    """The state stays in WAL mode for good (a journal-mode switch is a crash hazard), and
    any reader of a WAL database opens its -wal and -shm files: nothing else appears."""
    make_archive(tmp_path)
    before = set(os.listdir(tmp_path / STATE_DIR))
    verify_archive(tmp_path)
    after = set(os.listdir(tmp_path / STATE_DIR))
    assert after - before <= {"state.sqlite3-wal", "state.sqlite3-shm"}


# rendering


def some_problems(count: int) -> VerifyReport:
    problems = [Problem("missing", "a.mp4", A, "no file at this path")]
    problems += [
        Problem("unexpected", f"extra-{n:03}", None, "no archived call owns this file")
        for n in range(count - 1)
    ]
    return VerifyReport(checked=5, bytes_checked=3 * 2**20, problems=problems)


def test_report_json_has_every_problem_and_counts_per_kind() -> None:
    report = VerifyReport(
        states=["whole archive"],
        checked=3,
        bytes_checked=1234,
        problems=[
            Problem("missing", "a.mp4", A, "no file at this path"),
            Problem("modified", "b.mp4", B, "sha256 differs"),
            Problem("unexpected", "x", None, "no archived call owns this file"),
            Problem("unexpected", "y", None, "no archived call owns this file"),
        ],
    )
    assert report_json(report) == {
        "ok": False,
        "states": ["whole archive"],
        "checked": 3,
        "bytes_checked": 1234,
        "problems": [
            {"kind": "missing", "path": "a.mp4", "call_id": A, "detail": "no file at this path"},
            {"kind": "modified", "path": "b.mp4", "call_id": B, "detail": "sha256 differs"},
            {
                "kind": "unexpected",
                "path": "x",
                "call_id": None,
                "detail": report.problems[2].detail,
            },
            {
                "kind": "unexpected",
                "path": "y",
                "call_id": None,
                "detail": report.problems[3].detail,
            },
        ],
        "counts": {"missing": 1, "truncated": 0, "modified": 1, "unexpected": 2},
        "manifest": [],
    }


def test_report_json_of_a_clean_archive_is_ok() -> None:
    report = VerifyReport(states=["shard-0-of-2", "shard-1-of-2"], checked=2, bytes_checked=10)
    assert report_json(report) == {
        "ok": True,
        "states": ["shard-0-of-2", "shard-1-of-2"],
        "checked": 2,
        "bytes_checked": 10,
        "problems": [],
        "counts": {"missing": 0, "truncated": 0, "modified": 0, "unexpected": 0},
        "manifest": [],
    }


def test_render_text_says_what_was_checked_and_lists_each_problem(tmp_path: Path) -> None:
    text = render_text(some_problems(3), tmp_path)
    assert str(tmp_path) in text
    assert "files checked     5 (3145728 bytes, 3.0 MiB read)" in text
    assert "missing           1" in text
    assert "unexpected        2" in text
    assert "PROBLEMS FOUND" in text
    assert f"  missing    a.mp4 (call {A}): no file at this path" in text.splitlines()
    assert "  unexpected extra-001: no archived call owns this file" in text.splitlines()
    assert "more" not in text


def test_render_text_of_a_clean_archive_says_ok(tmp_path: Path) -> None:
    text = render_text(VerifyReport(checked=2, bytes_checked=10, problems=[]), tmp_path)
    assert text.splitlines()[-1] == "result            ok"


def test_render_text_shows_the_first_hundred_problems_then_how_many_more(tmp_path: Path) -> None:
    lines = render_text(some_problems(MAX_PROBLEMS_SHOWN + 7), tmp_path).splitlines()
    listed = [line for line in lines if line.startswith("  ") and "extra-" in line]
    assert len(listed) == MAX_PROBLEMS_SHOWN - 1  # and the missing one
    assert lines[-1] == "  … and 7 more"
    assert "extra-098" in lines[-2]


def test_render_text_does_not_say_more_at_exactly_the_limit(tmp_path: Path) -> None:
    lines = render_text(some_problems(MAX_PROBLEMS_SHOWN), tmp_path).splitlines()
    assert "more" not in lines[-1]
