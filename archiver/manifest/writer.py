"""The manifest (schema 2) and the run reports, rendered from the state, streamed, atomic (§7).

`manifest.json` is a small index: the tool, the counts per status, and the list of the
manifest's parts, each with its path, call count and sha256. The calls are in the parts,
`manifest/part-NNNNNN.json`, each holding the calls `seq` PART_CALLS*N to PART_CALLS*(N+1) - 1
in the order they were first recorded (segments of first-recorded order rather than parts by
date: a nightly's new calls all land in the last part or two, `run` knows no date without
--with-metadata, and every part has the same bound). A write rewrites only the parts with a
call changed since the last one, each atomically, from a read snapshot of the state, then the
index, last; every file is valid JSON at every instant. An archive of schema 1 has every part
written on its first run, and its single manifest.json replaced by the index.

Writes happen in a worker thread (the run's outputs, the periodic write): never on the loop.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from archiver import __version__
from archiver.archive.names import (
    RUNS_DIR,
    is_report_name,
    manifest_name,
    part_name,
    parts_dir,
    report_name,
)
from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard
from archiver.destinations.base import Destination
from archiver.destinations.folder import LocalFolder
from archiver.state import catalog
from archiver.state.call_records import CallRecord, utc_now
from archiver.state.catalog import PartInfo, Snapshot, snapshot, store
from archiver.state.database import State

SCHEMA_VERSION = 2
STATUSES = tuple(Status)


def load_schema(document: str = "index") -> dict[str, Any]:
    """The JSON Schema shipped in the package (archiver/manifest/manifest.schema.json) for one
    of its documents: `index` (manifest.json), `part` (a part) or `export` (what `osvi-archiver
    manifest --format json` prints)."""
    text = resources.files("archiver.manifest").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return {**schema, "$ref": f"#/$defs/{document}"}


def entry(record: CallRecord) -> dict[str, Any]:
    """One call as the manifest shows it: file fields only when archived, error otherwise."""
    archived = record.status == Status.ARCHIVED
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
        "md5_checked": bool(record.md5_checked)
        if archived and record.md5_checked is not None
        else None,
    }


def json_list(items: Iterable[Any]) -> Iterator[bytes]:
    """A JSON array's items, one a line, produced item by item."""
    separator = b"\n  "
    for item in items:
        yield separator + json.dumps(item, separators=(",", ":")).encode()
        separator = b",\n  "


def write_manifest(
    state: State,
    archive: Destination | Path,
    file_mode: int,
    stop: Callable[[], bool] | None = None,
) -> Path | str | None:
    """Bring the manifest up to date with what the state has committed: the parts changed
    since the last write, then the index. In a worker thread; returns where the index is,
    None when none was written (a first write cut short: the next run writes it).

    `stop` is asked before each part: once it says so, the parts not written yet are left for
    the next write (the index then lists them as they were, and the state still marks them to
    do), so that a run asked to stop is not held up by a large first write."""
    dest = as_destination(archive)
    shard = state.shard
    index = manifest_name(shard)
    state.commit()  # what the run recorded so far, for the snapshot to see
    is_index = _is_index(dest.read(index, 256))
    with snapshot(state) as snap:
        upto, known = snap.upto(), snap.parts()
        if is_index:
            todo = snap.changed_parts(snap.written_upto())
            names = {part_name(p, shard): p for p in known}
            there = dest.present(names, parts_dir(shard))
            todo |= {p for name, p in names.items() if name not in there}
        else:  # no index yet, or a schema-1 manifest: every part
            todo = snap.every_part() | set(known)
        written: list[PartInfo] = []
        for part in sorted(todo):
            if stop is not None and stop():
                break
            written.append(_write_part(snap, dest, part, shard, file_mode))
    complete = len(written) == len(todo)
    emptied = {info.part for info in written if not info.calls}
    for part in emptied:
        dest.remove(part_name(part, shard))
        known.pop(part, None)
    known.update((info.part, info) for info in written if info.calls)
    written_index = complete or is_index
    if written_index:
        document = [_index_document(known, shard)]
        dest.write(index, document, file_mode, temp_dir=parts_dir(shard))
    # Only a write that did every part moves the mark: an interrupted one is done again.
    store(state, [info for info in written if info.calls], emptied, upto if complete else None)
    state.commit()
    return dest.shown(index) if written_index else None


def as_destination(archive: Destination | Path) -> Destination:
    """A folder given as a path (tests, the bench's seeds) is a LocalFolder."""
    return archive if isinstance(archive, Destination) else LocalFolder(archive)


def _is_index(head: bytes | None) -> bool:
    """Whether a file starting with `head` is a schema-2 index (not missing, not schema 1)."""
    return head is not None and b'"schema_version": 2' in head


def _write_part(
    snap: Snapshot, dest: Destination, part: int, shard: Shard | None, file_mode: int
) -> PartInfo:
    digest = hashlib.sha256()
    counts: Counter[str] = Counter()

    def chunks() -> Iterator[bytes]:
        head = {"schema_version": SCHEMA_VERSION, "tool": "osvi-archiver", "part": part}
        for chunk in (
            json.dumps(head)[:-1].encode() + b', "calls": [',
            *json_list(_counted(snap.part(part), counts)),
            b"\n]}\n",
        ):
            digest.update(chunk)
            yield chunk

    body = list(chunks())  # one part: a bounded number of calls
    if counts.total():
        dest.write(part_name(part, shard), body, file_mode)
    return PartInfo(part, counts.total(), digest.hexdigest(), dict(counts))


def _counted(records: Iterator[CallRecord], counts: Counter[str]) -> Iterator[dict[str, Any]]:
    for record in records:
        counts[record.status or "unknown"] += 1
        yield entry(record)


def _index_document(parts: dict[int, PartInfo], shard: Shard | None) -> bytes:
    counts: Counter[str] = Counter({status: 0 for status in STATUSES})
    for info in parts.values():
        counts.update(info.counts)
    document = {
        "schema_version": SCHEMA_VERSION,
        "tool": "osvi-archiver",
        "tool_version": __version__,
        "updated_at": utc_now(),
        "total": sum(info.calls for info in parts.values()),
        "counts": dict(counts),
        "part_calls": catalog.PART_CALLS,
        "parts": [
            {"path": part_name(p, shard), "calls": info.calls, "sha256": info.sha256}
            for p, info in sorted(parts.items())
        ],
    }
    return json.dumps(document, indent=1).encode() + b"\n"


def write_run_report(
    state: State,
    archive: Destination | Path,
    run_id: str,
    summary: dict[str, Any],
    file_mode: int,
) -> Path | str:
    """The run's settings (no secrets), timing and counts, then its per-call outcomes and
    invalid rows, streamed from the state: bounded by the run's own calls."""
    dest = as_destination(archive)
    relative = f"{RUNS_DIR}/{report_name(run_id, state.shard)}"
    invalid = (
        {"source": source, "line": line, "reason": reason, "value": value}
        for source, line, reason, value in state.invalid_rows(run_id)
    )

    def chunks() -> Iterator[bytes]:
        yield json.dumps(summary, indent=2)[:-2].encode() + b',\n  "calls": ['
        yield from json_list(entry(r) for r in state.run_outcomes(run_id))
        yield b'\n],\n  "invalid_rows": ['
        yield from json_list(invalid)
        yield b"\n]}\n"

    dest.write(relative, chunks(), file_mode)
    return dest.shown(relative)


def prune_run_reports(
    archive: Destination | Path, keep: int, shard: Shard | None = None
) -> list[str]:
    """Delete the oldest run reports beyond `keep` (run ids sort by their start time); each
    shard sharing the folder keeps its own `keep` reports. Only names the tool gives its
    reports are considered: any other file in `runs/` is left alone. The names deleted."""
    dest = as_destination(archive)
    reports = sorted(name for name in dest.names(RUNS_DIR) if is_report_name(name, shard))
    doomed = reports[: max(0, len(reports) - keep)]
    for name in doomed:
        dest.remove(f"{RUNS_DIR}/{name}")
    return doomed
