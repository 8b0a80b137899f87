"""`osvi-archiver manifest`: the whole manifest as one document on stdout, streamed from the
index and its parts (for users who want a single file, and for scripts written for the
schema-1 manifest.json: `--format json` has its shape, `.calls[]` and all).

Formats: `json` (one document), `jsonl` (one call a line), `csv` (a header, then one call a
line; `error` as `error_kind` and `error_message`). Calls come in the parts' order, the order
they were first recorded. Each part is checked against the sha256 the index gives it: a part
written after the index (a run is writing the manifest right now) draws a warning and is
used as it is. Memory holds one part at a time, whatever the archive's size.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from archiver.destination import Destination
from archiver.errors import LocalError
from archiver.manifest import as_destination
from archiver.names import manifest_name
from archiver.shard import Shard

log = logging.getLogger("archiver.export")
FORMATS = ("json", "jsonl", "csv")
CSV_FIELDS = (
    "call_id", "status", "path", "bytes", "sha256", "content_type", "archived_at", "attempts",
    "run_id", "error_kind", "error_message", "metadata_path", "transcript_path",
)  # fmt: skip


def indexes(dest: Destination, shard: Shard | None) -> list[str]:
    """The index or indexes to export: the shard's; else the whole archive's, or, in an
    archive only shards have written to, every shard's."""
    if shard is not None:
        return [manifest_name(shard)]
    whole = manifest_name(None)
    if dest.read(whole, 1) is not None:
        return [whole]
    shards = [s for s in dest.states() if s is not None]
    return [manifest_name(s) for s in shards] or [whole]


def export(
    archive: Destination | Path, shard: Shard | None, output_format: str, out: TextIO
) -> int:
    """Write the manifest to `out`; how many calls."""
    dest = as_destination(archive)
    found = indexes(dest, shard)
    documents = [_read_index(dest, name) for name in found]
    calls = (call for name, index in zip(found, documents, strict=True)
             for call in _calls(dest, name, index))  # fmt: skip
    if output_format == "json":
        updated = max(index["updated_at"] for index in documents)
        return _json(calls, updated, documents[0]["tool_version"], out)
    if output_format == "jsonl":
        count = 0
        for call in calls:
            out.write(json.dumps(call, separators=(",", ":")) + "\n")
            count += 1
        return count
    return _csv(calls, out)


def _read_index(dest: Destination, name: str) -> dict[str, Any]:
    path = dest.shown(name)
    body = dest.read(name)
    if body is None:
        raise LocalError(f"no manifest at {path}: nothing was archived here yet")
    try:
        index: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise LocalError(f"cannot read the manifest index {path}: {exc}") from exc
    version = index.get("schema_version") if isinstance(index, dict) else None
    if version == 1:
        raise LocalError(
            f"{path} is a schema-1 manifest (the whole manifest, in one file): the next run "
            "or sync writes schema 2; until then, read that file itself"
        )
    if version != 2 or not isinstance(index.get("parts"), list):
        raise LocalError(f"{path} is not an osvi-archiver manifest index")
    return index


def _calls(dest: Destination, index_name: str, index: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listed in index["parts"]:
        name = str(listed.get("path", ""))
        path = dest.shown(name)
        body = dest.read(name) if name and ".." not in name.split("/") else None
        try:
            if body is None:
                raise OSError("missing")
            part = json.loads(body)
        except (OSError, ValueError) as exc:
            raise LocalError(f"cannot read manifest part {path}: {exc}") from exc
        if hashlib.sha256(body).hexdigest() != listed.get("sha256"):
            log.warning(
                "%s changed since %s was written (a run is writing the manifest?): used as it is",
                path,
                index_name,
                extra={"event": "manifest_part_changed"},
            )
        yield from part.get("calls", [])


def _json(calls: Iterator[dict[str, Any]], updated_at: str, version: str, out: TextIO) -> int:
    head = {"schema_version": 2, "tool": "osvi-archiver", "tool_version": version,
            "updated_at": updated_at}  # fmt: skip
    out.write(json.dumps(head)[:-1] + ', "calls": [')
    count = 0
    for call in calls:
        out.write(("\n  " if not count else ",\n  ") + json.dumps(call, separators=(",", ":")))
        count += 1
    out.write("\n]}\n")
    return count


def _csv(calls: Iterator[dict[str, Any]], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    count = 0
    for call in calls:
        error = call.get("error") or {}
        row = {**call, "error_kind": error.get("kind"), "error_message": error.get("message")}
        writer.writerow(["" if row.get(name) is None else row[name] for name in CSV_FIELDS])
        count += 1
    return count
