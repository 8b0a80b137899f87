from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from archiver import __version__
from archiver.archive.names import (
    MANIFEST_NAME,
    PARTS_DIR,
    RUNS_DIR,
    STATE_DIR,
    is_report_name,
    report_name,
)
from archiver.engine.lifecycle import new_run_id
from archiver.errors import LocalError
from archiver.manifest.writer import (
    entry,
    load_schema,
    prune_run_reports,
    write_manifest,
    write_run_report,
)
from archiver.state.call_records import CallRecord
from archiver.state.database import State

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
D = "44444444-4444-4444-8444-444444444444"
SHA = "0123456789abcdef" * 4
UPDATED = "2026-11-05T10:00:00.123456Z"

ARCHIVED = CallRecord(
    call_id=A,
    status="archived",
    path=f"2026/11/{A}.mp4",
    bytes=1234,
    sha256=SHA,
    content_type="audio/mp4",
    archived_at="2026-11-05T09:59:58.000001Z",
    attempts=1,
    run_id="run-1",
)
# Non-archived records may still carry stale file fields in the state (a --force re-download
# that failed): the manifest must show them as null.
FAILED = CallRecord(
    call_id=B,
    status="failed",
    path=f"{B}.mp4",
    bytes=99,
    sha256=SHA,
    content_type="audio/mp4",
    archived_at="2026-11-01T00:00:00Z",
    attempts=6,
    run_id="run-1",
    error_kind="server_error",
    error_message="API answered 500: boom",
)
PENDING = CallRecord(
    call_id=C,
    status="pending",
    attempts=1,
    run_id="run-1",
    error_kind="pending",
    error_message="no recording yet",
)
NOT_AVAILABLE = CallRecord(call_id=D, status="not_available", attempts=1, run_id="run-0")
MIX = [ARCHIVED, FAILED, PENDING, NOT_AVAILABLE]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema("index"))


@pytest.fixture(scope="module")
def part_validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema("part"))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path) as opened:
        yield opened


def store(state: State, *records: CallRecord) -> None:
    for record in records:
        state.claim(record.call_id, record.run_id or "run-x")
        state.record(record)


# entry


def test_entry_of_an_archived_call_has_its_file_fields_and_no_error() -> None:
    assert entry(ARCHIVED) == {
        "call_id": A,
        "status": "archived",
        "path": f"2026/11/{A}.mp4",
        "bytes": 1234,
        "sha256": SHA,
        "content_type": "audio/mp4",
        "archived_at": "2026-11-05T09:59:58.000001Z",
        "attempts": 1,
        "run_id": "run-1",
        "error": None,
        "metadata_path": None,
        "transcript_path": None,
        "md5_checked": None,  # recorded without saying (an older state, a rebuild)
    }


@pytest.mark.parametrize(("checked", "shown"), [(1, True), (0, False), (True, True), (None, None)])
def test_entry_says_whether_the_md5_was_checked_only_for_an_archived_call(
    checked: bool | int | None, shown: bool | None
) -> None:
    from dataclasses import replace

    assert entry(replace(ARCHIVED, md5_checked=checked))["md5_checked"] is shown  # type: ignore[arg-type]
    assert entry(replace(FAILED, md5_checked=checked))["md5_checked"] is None  # type: ignore[arg-type]


def test_entry_of_a_failed_call_nulls_file_fields_and_has_an_error_object() -> None:
    assert entry(FAILED) == {
        "call_id": B,
        "status": "failed",
        "path": None,
        "bytes": None,
        "sha256": None,
        "content_type": None,
        "archived_at": None,
        "attempts": 6,
        "run_id": "run-1",
        "error": {"kind": "server_error", "message": "API answered 500: boom"},
        "metadata_path": None,
        "transcript_path": None,
        "md5_checked": None,
    }


def test_entry_of_a_pending_call_has_an_error_object() -> None:
    assert entry(PENDING)["error"] == {"kind": "pending", "message": "no recording yet"}
    assert entry(PENDING)["path"] is None


def test_entry_without_a_stored_error_still_has_a_non_empty_kind() -> None:
    assert entry(NOT_AVAILABLE)["error"] == {"kind": "unknown", "message": ""}


# the schema


def part_document(*records: CallRecord) -> dict[str, Any]:
    return {"schema_version": 2, "tool": "osvi-archiver", "part": 0,
            "calls": [entry(r) for r in records]}  # fmt: skip


def test_the_shipped_schema_is_valid_for_each_document() -> None:
    for document in ("index", "part", "export"):
        Draft202012Validator.check_schema(load_schema(document))


def test_a_part_of_every_status_validates(part_validator: Draft202012Validator) -> None:
    assert sorted(part_validator.iter_errors(part_document(*MIX)), key=str) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("path", None), ("sha256", None), ("error", {"kind": "x", "message": "y"})],
)
def test_schema_rejects_an_archived_call_missing_its_file(
    part_validator: Draft202012Validator, field: str, value: object
) -> None:
    document = part_document(ARCHIVED)
    document["calls"][0][field] = value
    assert not part_validator.is_valid(document)


def test_schema_rejects_a_failed_call_without_an_error(
    part_validator: Draft202012Validator,
) -> None:
    document = part_document(FAILED)
    document["calls"][0]["error"] = None
    assert not part_validator.is_valid(document)


# write_manifest: the index and its parts


def index_of(path: Path | str | None, validator: Draft202012Validator) -> dict[str, Any]:
    assert path is not None  # the index was written
    index: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    assert sorted(validator.iter_errors(index), key=str) == []
    return index


def calls_of(out: Path, index: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for listed in index["parts"]:
        body = (out / listed["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == listed["sha256"]
        part = json.loads(body)
        assert len(part["calls"]) == listed["calls"]
        calls += part["calls"]
    return calls


def test_write_manifest_writes_a_valid_index_and_parts_in_first_recorded_order(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    store(state, NOT_AVAILABLE, PENDING, ARCHIVED, FAILED)
    path = write_manifest(state, tmp_path, 0o600)
    assert path == tmp_path / MANIFEST_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [STATE_DIR, MANIFEST_NAME, PARTS_DIR]
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    index = index_of(path, validator)
    assert index["schema_version"] == 2
    assert index["tool_version"] == __version__
    assert index["total"] == 4
    assert index["counts"] == {"archived": 1, "pending": 1, "not_available": 1, "failed": 1}
    assert [c["call_id"] for c in calls_of(tmp_path, index)] == [D, C, A, B]
    assert calls_of(tmp_path, index)[2] == entry(ARCHIVED)


def test_write_manifest_of_an_empty_archive(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert (index["total"], index["parts"]) == (0, [])


def test_parts_are_bounded_and_only_the_changed_ones_are_written_again(
    state: State, tmp_path: Path, validator: Draft202012Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.archive import storage
    from archiver.state import catalog

    monkeypatch.setattr(catalog, "PART_CALLS", 2)
    ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(5)]
    for call_id in ids:
        store(state, CallRecord(call_id, "archived", path=f"{call_id}.mp4", bytes=1,
                                sha256=SHA, archived_at=UPDATED, run_id="run-1"))  # fmt: skip
    state.commit()
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert [(p["path"], p["calls"]) for p in index["parts"]] == [
        ("manifest/part-000000.json", 2), ("manifest/part-000001.json", 2),
        ("manifest/part-000002.json", 1),
    ]  # fmt: skip
    written: list[str] = []
    original = storage.write_atomic

    def spy(path: Path, chunks: Any, mode: int, **kwargs: Any) -> None:
        written.append(path.name)
        original(path, chunks, mode, **kwargs)

    monkeypatch.setattr("archiver.destinations.folder.write_atomic", spy)
    state.record(CallRecord(ids[3], "failed", run_id="run-2", error_kind="x", error_message="y"))
    state.commit()
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert written == ["part-000001.json", MANIFEST_NAME]  # the index last
    assert index["counts"]["failed"] == 1
    written.clear()
    write_manifest(state, tmp_path, 0o600)  # nothing changed: the index only
    assert written == [MANIFEST_NAME]


def test_a_part_deleted_by_hand_is_written_again(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    store(state, ARCHIVED)
    state.commit()
    write_manifest(state, tmp_path, 0o600)
    (tmp_path / "manifest" / "part-000000.json").unlink()
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert [c["call_id"] for c in calls_of(tmp_path, index)] == [A]


def test_a_schema_1_manifest_is_replaced_by_the_index_once_every_part_is_written(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    old = tmp_path / MANIFEST_NAME
    old.write_text('{"schema_version": 1, "tool": "osvi-archiver", "calls": []}')
    store(state, ARCHIVED, FAILED)
    state.commit()
    state.store_parts([], set(), 10**9)  # as if written already: schema 1 still redoes all
    state.commit()
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert [c["call_id"] for c in calls_of(tmp_path, index)] == [A, B]


def test_a_write_asked_to_stop_leaves_the_rest_for_the_next_one(
    state: State, tmp_path: Path, validator: Draft202012Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.state import catalog

    monkeypatch.setattr(catalog, "PART_CALLS", 1)
    store(state, ARCHIVED, FAILED, PENDING)
    state.commit()
    asked = iter([False, True])
    shown = write_manifest(state, tmp_path, 0o600, stop=lambda: next(asked, True))
    assert shown is None  # and said so: a summary never names a manifest that is not there
    assert not (tmp_path / MANIFEST_NAME).exists()  # no index until every part is there
    assert sorted(p.name for p in (tmp_path / "manifest").iterdir()) == ["part-000000.json"]
    index = index_of(write_manifest(state, tmp_path, 0o600), validator)
    assert index["total"] == 3


# write_run_report


def test_write_run_report_holds_summary_calls_and_invalid_rows(
    state: State, tmp_path: Path
) -> None:
    store(state, ARCHIVED, FAILED, PENDING, NOT_AVAILABLE)  # NOT_AVAILABLE is run-0's
    state.add_invalid_row("run-1", "calls.csv", 4, "not a UUID", "abc")
    state.add_invalid_row("run-0", "old.csv", 1, "not a UUID", "old")
    state.add_invalid_row("run-1", "calls.csv", 9, "empty id", "")
    state.commit()
    summary = {"run_id": "run-1", "exit_code": 1, "counts": {"archived": 1, "failed": 1}}

    path = write_run_report(state, tmp_path, "run-1", summary, 0o600)

    assert path == tmp_path / RUNS_DIR / "run-1.json"
    report = json.loads(path.read_text("utf-8"))
    assert {k: report[k] for k in summary} == summary
    assert report["calls"] == [entry(ARCHIVED), entry(FAILED), entry(PENDING)]
    assert report["invalid_rows"] == [
        {"source": "calls.csv", "line": 4, "reason": "not a UUID", "value": "abc"},
        {"source": "calls.csv", "line": 9, "reason": "empty id", "value": ""},
    ]
    assert sorted(p.name for p in (tmp_path / RUNS_DIR).iterdir()) == ["run-1.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_run_report_of_a_run_with_nothing_done(state: State, tmp_path: Path) -> None:
    path = Path(write_run_report(state, tmp_path, "run-7", {"run_id": "run-7"}, 0o600))
    assert json.loads(path.read_text()) == {"run_id": "run-7", "calls": [], "invalid_rows": []}


# shards sharing a folder


def test_a_shard_writes_its_own_manifest_and_reports(tmp_path: Path) -> None:
    with State(tmp_path, shard=(2, 5)) as state:
        state.claim(A, "run-1")
        state.record(CallRecord(A, "failed", attempts=1, run_id="run-1", error_kind="http"))
        manifest = write_manifest(state, tmp_path, 0o600)
        report = write_run_report(state, tmp_path, "run-1", {"run_id": "run-1"}, 0o600)
    assert manifest == tmp_path / "manifest.shard-2-of-5.json"
    assert report == tmp_path / RUNS_DIR / "run-1.shard-2-of-5.json"
    assert not (tmp_path / MANIFEST_NAME).exists()
    index = json.loads(manifest.read_text())
    assert [p["path"] for p in index["parts"]] == ["manifest.shard-2-of-5/part-000000.json"]
    assert [c["call_id"] for c in calls_of(tmp_path, index)] == [A]
    assert (tmp_path / STATE_DIR / "shard-2-of-5" / "state.sqlite3").is_file()


def test_pruning_deletes_only_the_names_the_tool_gives_its_reports(tmp_path: Path) -> None:
    runs = tmp_path / RUNS_DIR
    runs.mkdir()
    reports = [f"2026010{n}T000000.000Z-abcdef.json" for n in range(1, 4)]
    theirs = [
        "notes.json", "0-first.json", "20260101T000000.000Z-abcdef.json.bak",
        "20260101T000000.000Z-ABCDEF.json", "20260101T000000Z-abcdef.json", "a.shard-0-of-2.json",
    ]  # fmt: skip
    for name in reports + theirs:
        (runs / name).write_text("{}")
    assert prune_run_reports(tmp_path, 1, None) == reports[:2]
    assert sorted(p.name for p in runs.iterdir()) == sorted([reports[2], *theirs])


@pytest.mark.parametrize("shard", [None, (1, 3)])
def test_every_run_id_the_tool_makes_names_a_report_it_may_prune(shard: Any) -> None:
    name = report_name(new_run_id(1_796_000_000.5), shard)
    assert is_report_name(name, shard)
    assert not is_report_name(name, (0, 3) if shard else (1, 3))


def test_pruning_refuses_a_runs_folder_linked_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    names = [f"2026010{n}T000000.000Z-abcdef.json" for n in range(1, 4)]
    for name in names:
        (elsewhere / name).write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    (out / RUNS_DIR).symlink_to(elsewhere)
    with pytest.raises(LocalError, match=f"{out / RUNS_DIR} is a symbolic link"):
        prune_run_reports(out, 1, None)
    assert sorted(p.name for p in elsewhere.iterdir()) == names


@pytest.mark.parametrize("folder", [RUNS_DIR, PARTS_DIR])
def test_no_report_or_manifest_is_written_through_a_linked_folder(
    tmp_path: Path, folder: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / folder).symlink_to(elsewhere)
    with State(out) as state:
        state.claim(A, "run-1")
        state.record(ARCHIVED)
        with pytest.raises(LocalError, match=f"{out / folder} is a symbolic"):
            write_run_report(state, out, "run-1", {}, 0o600) if folder == RUNS_DIR else (
                write_manifest(state, out, 0o600)
            )
    assert list(elsewhere.iterdir()) == []


def test_each_shard_keeps_its_own_bound_of_run_reports(tmp_path: Path) -> None:
    runs = tmp_path / RUNS_DIR
    runs.mkdir()
    names = [f"2026010{n}T000000.000Z-aaaaaa" for n in range(1, 5)]
    for name in names:
        (runs / f"{name}.json").write_text("{}")
        (runs / f"{name}.shard-0-of-2.json").write_text("{}")
        (runs / f"{name}.shard-1-of-2.json").write_text("{}")
    pruned = prune_run_reports(tmp_path, 2, (0, 2))
    assert sorted(pruned) == [f"{n}.shard-0-of-2.json" for n in names[:2]]
    pruned = prune_run_reports(tmp_path, 3, None)
    assert pruned == [f"{names[0]}.json"]
    left = sorted(p.name for p in runs.iterdir())
    assert len(left) == 3 + 2 + 4  # whole: 3 kept; shard 0: 2 kept; shard 1 untouched
