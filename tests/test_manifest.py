from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from archiver import __version__
from archiver.manifest import (
    MANIFEST_NAME,
    RUNS_DIR,
    entry,
    load_schema,
    manifest_chunks,
    prune_run_reports,
    write_manifest,
    write_run_report,
)
from archiver.state import STATE_DIR, CallRecord, State

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
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path) as opened:
        yield opened


def parse(chunks: Iterator[bytes]) -> Any:
    return json.loads(b"".join(chunks))


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
    }


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
    }


def test_entry_of_a_pending_call_has_an_error_object() -> None:
    assert entry(PENDING)["error"] == {"kind": "pending", "message": "no recording yet"}
    assert entry(PENDING)["path"] is None


def test_entry_without_a_stored_error_still_has_a_non_empty_kind() -> None:
    assert entry(NOT_AVAILABLE)["error"] == {"kind": "unknown", "message": ""}


# manifest_chunks


def test_manifest_chunks_parse_as_json_and_validate_for_a_mix_of_statuses(
    validator: Draft202012Validator,
) -> None:
    manifest = parse(manifest_chunks(MIX, UPDATED))
    assert sorted(validator.iter_errors(manifest), key=str) == []
    assert manifest["schema_version"] == 1
    assert manifest["tool"] == "osvi-archiver"
    assert manifest["tool_version"] == __version__
    assert manifest["updated_at"] == UPDATED
    assert manifest["calls"] == [entry(r) for r in MIX]


def test_manifest_chunks_of_an_empty_archive_validate(validator: Draft202012Validator) -> None:
    manifest = parse(manifest_chunks([], UPDATED))
    assert manifest["calls"] == []
    assert validator.is_valid(manifest)


def test_manifest_chunks_of_one_call_validate(validator: Draft202012Validator) -> None:
    manifest = parse(manifest_chunks([ARCHIVED], UPDATED))
    assert [c["call_id"] for c in manifest["calls"]] == [A]
    assert validator.is_valid(manifest)


def test_manifest_chunks_are_streamed_per_call() -> None:
    consumed: list[str] = []

    def records() -> Iterator[CallRecord]:
        for record in MIX:
            consumed.append(record.call_id)
            yield record

    chunks = manifest_chunks(records(), UPDATED)
    next(chunks)
    next(chunks)
    assert consumed == [A]


@pytest.mark.parametrize(
    ("field", "value"),
    [("path", None), ("sha256", None), ("error", {"kind": "x", "message": "y"})],
)
def test_schema_rejects_an_archived_call_missing_its_file(
    validator: Draft202012Validator, field: str, value: object
) -> None:
    manifest = parse(manifest_chunks([ARCHIVED], UPDATED))
    manifest["calls"][0][field] = value
    assert not validator.is_valid(manifest)


def test_schema_rejects_a_failed_call_without_an_error(validator: Draft202012Validator) -> None:
    manifest = parse(manifest_chunks([FAILED], UPDATED))
    manifest["calls"][0]["error"] = None
    assert not validator.is_valid(manifest)


# write_manifest


def test_write_manifest_is_atomic_valid_and_sorted(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    store(state, NOT_AVAILABLE, PENDING, ARCHIVED, FAILED)
    path = write_manifest(state, tmp_path, 0o600)
    assert path == tmp_path / MANIFEST_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_DIR, MANIFEST_NAME]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = json.loads(path.read_text("utf-8"))
    assert validator.is_valid(manifest)
    assert [c["call_id"] for c in manifest["calls"]] == [A, B, C, D]
    assert manifest["calls"][0] == entry(ARCHIVED)


def test_write_manifest_of_an_empty_archive(
    state: State, tmp_path: Path, validator: Draft202012Validator
) -> None:
    path = write_manifest(state, tmp_path, 0o600)
    manifest = json.loads(path.read_text("utf-8"))
    assert manifest["calls"] == []
    assert validator.is_valid(manifest)


def test_write_manifest_replaces_the_previous_one(state: State, tmp_path: Path) -> None:
    store(state, ARCHIVED)
    write_manifest(state, tmp_path, 0o600)
    store(state, FAILED)
    path = write_manifest(state, tmp_path, 0o600)
    assert [c["call_id"] for c in json.loads(path.read_text())["calls"]] == [A, B]
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_DIR, MANIFEST_NAME]


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
    path = write_run_report(state, tmp_path, "run-7", {"run_id": "run-7"}, 0o600)
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
    assert [c["call_id"] for c in json.loads(manifest.read_text())["calls"]] == [A]
    assert (tmp_path / STATE_DIR / "shard-2-of-5" / "state.sqlite3").is_file()


def test_each_shard_keeps_its_own_bound_of_run_reports(tmp_path: Path) -> None:
    runs = tmp_path / RUNS_DIR
    runs.mkdir()
    names = [f"2026010{n}T000000.000Z-aaaaaa" for n in range(1, 5)]
    for name in names:
        (runs / f"{name}.json").write_text("{}")
        (runs / f"{name}.shard-0-of-2.json").write_text("{}")
        (runs / f"{name}.shard-1-of-2.json").write_text("{}")
    pruned = prune_run_reports(tmp_path, 2, (0, 2))
    assert sorted(p.name for p in pruned) == [f"{n}.shard-0-of-2.json" for n in names[:2]]
    pruned = prune_run_reports(tmp_path, 3, None)
    assert [p.name for p in pruned] == [f"{names[0]}.json"]
    left = sorted(p.name for p in runs.iterdir())
    assert len(left) == 3 + 2 + 4  # whole: 3 kept; shard 0: 2 kept; shard 1 untouched
