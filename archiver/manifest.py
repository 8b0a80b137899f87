"""`manifest.json` and `runs/<run_id>.json`, rendered from the state, streamed, atomic (§7)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from archiver import __version__
from archiver.state import CallRecord, Shard, State, shard_suffix, utc_now
from archiver.storage import write_atomic

MANIFEST_NAME = "manifest.json"
RUNS_DIR = "runs"
SCHEMA_VERSION = 1


def load_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.json, shipped in the package."""
    text = resources.files("archiver").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def entry(record: CallRecord) -> dict[str, Any]:
    """One call as the manifest shows it: file fields only when archived, error otherwise."""
    archived = record.status == "archived"
    error = None
    if not archived:
        error = {"kind": record.error_kind or "unknown", "message": record.error_message or ""}
    return {
        "call_id": record.call_id,
        "status": record.status,
        "path": record.path if archived else None,
        "bytes": record.bytes if archived else None,
        "sha256": record.sha256 if archived else None,
        "content_type": record.content_type if archived else None,
        "archived_at": record.archived_at if archived else None,
        "attempts": record.attempts,
        "run_id": record.run_id,
        "error": error,
        "metadata_path": record.metadata_path if archived else None,
        "transcript_path": record.transcript_path if archived else None,
    }


def _json_list(items: Iterable[Any]) -> Iterator[bytes]:
    """A JSON array, one item per line, produced item by item."""
    separator = b"\n  "
    for item in items:
        yield separator + json.dumps(item, separators=(",", ":")).encode()
        separator = b",\n  "


def manifest_chunks(records: Iterable[CallRecord], updated_at: str) -> Iterator[bytes]:
    head = {
        "schema_version": SCHEMA_VERSION,
        "tool": "osvi-archiver",
        "tool_version": __version__,
        "updated_at": updated_at,
    }
    yield json.dumps(head)[:-1].encode() + b', "calls": ['
    yield from _json_list(entry(r) for r in records)
    yield b"\n]}\n"


def manifest_name(shard: Shard | None) -> str:
    """`manifest.json`; a shard's is `manifest.shard-K-of-N.json` (the calls it archived)."""
    return f"manifest{shard_suffix(shard)}.json"


def report_name(run_id: str, shard: Shard | None) -> str:
    return f"{run_id}{shard_suffix(shard)}.json"


def write_manifest(state: State, out_dir: Path, file_mode: int) -> Path:
    path = out_dir / manifest_name(state.shard)
    write_atomic(path, manifest_chunks(state.calls(), utc_now()), file_mode)
    return path


def write_run_report(
    state: State, out_dir: Path, run_id: str, summary: dict[str, Any], file_mode: int
) -> Path:
    """The run's settings (no secrets), timing and counts, then its per-call outcomes and
    invalid rows, streamed from the state."""
    path = out_dir / RUNS_DIR / report_name(run_id, state.shard)
    invalid = (
        {"source": source, "line": line, "reason": reason, "value": value}
        for source, line, reason, value in state.invalid_rows(run_id)
    )

    def chunks() -> Iterator[bytes]:
        yield json.dumps(summary, indent=2)[:-2].encode() + b',\n  "calls": ['
        yield from _json_list(entry(r) for r in state.run_outcomes(run_id))
        yield b'\n],\n  "invalid_rows": ['
        yield from _json_list(invalid)
        yield b"\n]}\n"

    write_atomic(path, chunks(), file_mode)
    return path


def prune_run_reports(out_dir: Path, keep: int, shard: Shard | None = None) -> list[Path]:
    """Delete the oldest run reports beyond `keep` (run ids sort by their start time); each
    shard sharing the folder keeps its own `keep` reports."""
    label = f"{shard_suffix(shard)}.json"
    reports = sorted(
        path
        for path in (out_dir / RUNS_DIR).glob("*.json")
        if path.name.endswith(label) and (shard or ".shard-" not in path.name)
    )
    doomed = reports[: max(0, len(reports) - keep)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
