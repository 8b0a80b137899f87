"""Reading the manifest back (manifest/export.py): only the archive's own parts, bounded reads,
exit 4 naming what is wrong; and an index that lags its parts said for what it is (issue 21)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.names import MANIFEST_NAME, PARTS_DIR
from archiver.cli.commands import _index_lag
from archiver.cli.status import overview, render
from archiver.destinations.folder import LocalFolder
from archiver.destinations.lock import ArchiveLock, _flock_inode, held
from archiver.destinations.verify_folder import render_text, report_json, verify_archive
from archiver.errors import LocalError
from archiver.manifest import export as export_module
from archiver.manifest.export import export, index_lag
from archiver.manifest.writer import write_manifest
from archiver.state.call_records import CallRecord
from archiver.state.database import State

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
PART = f"{PARTS_DIR}/part-000000.json"


def failed(call_id: str, message: str = "boom") -> CallRecord:
    return CallRecord(call_id, "failed", attempts=1, run_id="run-1", error_kind="http",
                      error_message=message)  # fmt: skip


def archive_of(out: Path, *records: CallRecord) -> None:
    with State(out) as state:
        for record in records or (failed(A),):
            state.claim(record.call_id, "run-1")
            state.record(record)
        write_manifest(state, out, 0o600)


def exported(out: Path) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    export(out, None, "json", buffer)
    calls: list[dict[str, Any]] = json.loads(buffer.getvalue())["calls"]
    return calls


def rewrite_index(out: Path, change: Any) -> None:
    index = json.loads((out / MANIFEST_NAME).read_text())
    change(index)
    (out / MANIFEST_NAME).write_text(json.dumps(index))


# Only the archive's own parts, read bounded


@pytest.mark.parametrize(
    "named", ["/dev/zero", "/etc/passwd", "../outside.json", "manifest/../../x.json",
              "runs/20260101T000000.000Z-abcdef.json", "manifest/part-0.json", 7]
)  # fmt: skip
def test_an_index_naming_anything_but_its_own_parts_is_refused_unread(
    tmp_path: Path, named: object
) -> None:
    archive_of(tmp_path)
    rewrite_index(tmp_path, lambda index: index["parts"][0].update(path=named))
    with pytest.raises(LocalError, match=r"lists .* as a part: not a part of this archive"):
        exported(tmp_path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda index: index.update(parts={"a": 1}), "not an osvi-archiver manifest index"),
        (lambda index: index.pop("updated_at"), "not an osvi-archiver manifest index"),
        (lambda index: index.update(parts=["manifest/part-000000.json"]), "lists"),
        (lambda index: index["parts"][0].pop("sha256"), "without its sha256"),
        (lambda index: index["parts"][0].update(calls="1"), "without its sha256"),
    ],
)
def test_a_malformed_index_is_exit_4_naming_it(tmp_path: Path, change: Any, reason: str) -> None:
    archive_of(tmp_path)
    rewrite_index(tmp_path, change)
    with pytest.raises(LocalError, match=reason) as caught:
        exported(tmp_path)
    assert caught.value.exit_code == 4
    assert str(tmp_path / MANIFEST_NAME) in str(caught.value)


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"calls": [1]}', b"{", b"[" * 100_000])
def test_a_malformed_part_is_exit_4_naming_it(tmp_path: Path, body: bytes) -> None:
    archive_of(tmp_path)
    (tmp_path / PART).write_bytes(body)
    with pytest.raises(LocalError, match=f"manifest part {tmp_path / PART}"):
        exported(tmp_path)


@pytest.mark.parametrize("target", ["/dev/zero", "outside"])
def test_a_part_that_is_a_link_is_never_followed(tmp_path: Path, target: str) -> None:
    out = tmp_path / "out"
    archive_of(out)
    outside = tmp_path / "outside"
    outside.write_bytes((out / PART).read_bytes())
    (out / PART).unlink()
    (out / PART).symlink_to(outside if target == "outside" else Path(target))
    with pytest.raises(LocalError, match="missing, or not a regular file"):
        exported(out)


def test_a_manifest_folder_linked_elsewhere_is_never_read_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    archive_of(out)
    (out / PARTS_DIR).rename(tmp_path / "elsewhere")
    (out / PARTS_DIR).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(LocalError, match=f"{out / PARTS_DIR} is a symbolic link"):
        exported(out)


def test_a_part_or_index_over_the_bound_is_refused_unparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive_of(tmp_path, failed(A, "x" * 5000))
    monkeypatch.setattr(export_module, "MAX_DOCUMENT", 4096)
    with pytest.raises(LocalError, match=f"manifest part {tmp_path / PART} is over"):
        exported(tmp_path)
    monkeypatch.setattr(export_module, "MAX_DOCUMENT", 100)
    with pytest.raises(LocalError, match=f"{tmp_path / MANIFEST_NAME} is over"):
        exported(tmp_path)


# An index that lags its parts


def interrupted_write(out: Path) -> None:
    """A power cut between the part's rename and the index's: the part holds a call changed
    since, the index still lists the part's old sha256 and call count (and is older)."""
    archive_of(out, failed(A))
    old_index = (out / MANIFEST_NAME).read_bytes()
    with State(out) as state:
        state.claim(B, "run-2")
        state.record(failed(B))
        write_manifest(state, out, 0o600)
    (out / MANIFEST_NAME).write_bytes(old_index)
    part_written = (out / PART).stat().st_mtime_ns
    os.utime(out / MANIFEST_NAME, ns=(part_written - 10**9, part_written - 10**9))


def test_an_index_left_by_an_interrupted_write_is_said_so_by_manifest_verify_and_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    interrupted_write(tmp_path)
    with caplog.at_level(logging.WARNING, logger="archiver"):
        calls = exported(tmp_path)
    assert [c["call_id"] for c in calls] == [A, B]  # the part, whole, as it is
    [warning] = [r.getMessage() for r in caplog.records]
    said = "an index left behind by an interrupted write"
    assert said in warning
    assert "a run is writing" not in warning
    assert PART in warning
    report = verify_archive(tmp_path, index_lag=_index_lag(tmp_path))  # as the command does
    assert report.ok  # the recordings are what matter; the next run rewrites the index
    assert said in report_json(report)["manifest"][0]
    assert f"manifest          {MANIFEST_NAME} lists" in render_text(report, tmp_path)
    view = overview(LocalFolder(tmp_path))
    assert said in view["states"][0]["manifest"]
    assert "next run rewrites manifest.json" in render(view)


def test_while_a_run_holds_the_lock_the_same_lag_is_a_run_writing_now(tmp_path: Path) -> None:
    interrupted_write(tmp_path)
    lock = ArchiveLock(tmp_path)
    lock.acquire()
    try:
        lag = index_lag(LocalFolder(tmp_path), None, every=True)
    finally:
        lock.release()
    assert lag is not None
    assert lag.run_holds is True
    assert "a run is writing the manifest now" in lag.explain()
    assert "interrupted" not in lag.explain()


def test_a_part_not_listed_yet_is_a_lag_too_and_status_sees_it_cheaply(tmp_path: Path) -> None:
    archive_of(tmp_path)
    unlisted = tmp_path / PARTS_DIR / "part-000001.json"
    unlisted.write_bytes((tmp_path / PART).read_bytes())
    lag = index_lag(LocalFolder(tmp_path), None, every=False)
    assert lag is not None
    assert lag.parts == (f"{PARTS_DIR}/part-000001.json",)


def test_status_hashes_only_the_parts_written_after_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive_of(tmp_path)
    hashed: list[bytes] = []
    real = hashlib.sha256

    def spy(body: bytes) -> Any:
        hashed.append(body)
        return real(body)

    monkeypatch.setattr(hashlib, "sha256", spy)
    assert index_lag(LocalFolder(tmp_path), None, every=False) is None
    assert hashed == []  # a consistent archive: a stat of each part, no read
    assert index_lag(LocalFolder(tmp_path), None, every=True) is None
    assert len(hashed) == 1


def test_a_consistent_archive_says_nothing_of_its_manifest(tmp_path: Path) -> None:
    archive_of(tmp_path, failed(A), failed(B))
    assert verify_archive(tmp_path, index_lag=_index_lag(tmp_path)).manifest == []
    assert overview(LocalFolder(tmp_path))["states"][0]["manifest"] is None


# Whether a run holds the lock, without taking it


def test_the_kernels_table_of_locks_says_whether_a_run_holds_the_archive(tmp_path: Path) -> None:
    assert held(tmp_path) is False  # no lock file: no run ever
    lock = ArchiveLock(tmp_path)
    lock.acquire()
    assert held(tmp_path) is True
    lock.release()
    assert held(tmp_path) is False
    assert held(tmp_path, table=tmp_path / "no-such-table") is None


def test_lines_of_the_table_of_locks() -> None:
    assert _flock_inode("1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146790 0 EOF") == 2146790
    assert _flock_inode("1: -> FLOCK  ADVISORY  WRITE 4243 fe:00:2146790 0 EOF") is None
    assert _flock_inode("2: FLOCK  ADVISORY  READ 4242 fe:00:2146790 0 EOF") is None
    assert _flock_inode("3: POSIX  ADVISORY  WRITE 4242 fe:00:2146790 0 EOF") is None
    assert _flock_inode("garbage") is None


async def test_the_manifest_command_on_a_hostile_index_exits_4_naming_the_part(
    tmp_path: Path,
) -> None:
    from tests.integration.cli_helpers import osvi

    archive_of(tmp_path)
    for named in ("/dev/zero", "manifest/part-000000.json"):
        rewrite_index(tmp_path, lambda index, n=named: index.update(parts=[{"path": n}]))
        done = await osvi("manifest", "--out", str(tmp_path), deadline=20)
        assert done.code == 4, done.stderr
        assert named in done.stderr
