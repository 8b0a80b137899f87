"""`osvi-archiver manifest`: the whole manifest as one document on stdout, streamed from the
index and its parts (for users who want a single file, and for scripts written for the
schema-1 manifest.json: `--format json` has its shape, `.calls[]` and all); and whether an
index lags its parts, which `verify` and `status` say too.

Formats: `json` (one document), `jsonl` (one call a line), `csv` (a header, then one call a
line; `error` as `error_kind` and `error_message`). Calls come in the parts' order, the order
they were first recorded. Memory holds one part at a time, whatever the archive's size; an
index or a part over MAX_DOCUMENT is refused unread, and the index may name only the parts
the tool names (`manifest/part-NNNNNN.json`): nothing outside the archive is ever read.

An index lags its parts when a part's sha256 or call count is not the one it lists, or a
part is not listed: a run writes each part, then the index last. Either a run is writing the
manifest right now, or an earlier write was cut between a part's rename and the index's (a
crash, a power cut); the parts are whole either way (each is renamed into place), and the
next run rewrites the index. Which of the two it is, the lock says (lock.held).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

from archiver.archive.names import manifest_name, part_number, parts_dir
from archiver.archive.shard import Shard
from archiver.destinations.base import Destination
from archiver.destinations.folder import LocalFolder
from archiver.errors import LocalError
from archiver.manifest.writer import as_destination
from archiver.redaction import shorten

log = logging.getLogger("archiver.manifest.export")
CSV_FIELDS = (
    "call_id", "status", "path", "bytes", "sha256", "content_type", "archived_at", "attempts",
    "run_id", "error_kind", "error_message", "metadata_path", "transcript_path", "md5_checked",
)  # fmt: skip


MAX_DOCUMENT = 64 << 20  # an index or a part; a part of 10,000 calls is about 3.5 MB


@dataclass(frozen=True)
class IndexLag:
    """An index that lags its parts: which parts, and whether a run holds the lock now."""

    index: str  # manifest.json, or a shard's
    parts: tuple[str, ...]  # changed since the index listed them, or not listed yet
    run_holds: bool | None  # None: not known (a bucket, or no /proc/locks)

    def explain(self) -> str:
        some = ", ".join(self.parts[:3]) + (
            f" and {len(self.parts) - 3} more" if len(self.parts) > 3 else ""
        )
        head = f"{self.index} lists an older sha256 or call count for {some} (or not at all)"
        if self.run_holds:
            return f"{head}: a run is writing the manifest now, and rewrites {self.index} last"
        why = (
            "an index left behind by an interrupted write (a crash or power cut between a "
            "part's rename and the index's)"
        )
        if self.run_holds is None:
            why = f"a run writing the manifest now, or {why}"
        return f"{head}: {why}; each part is whole, and the next run rewrites {self.index}"


def indexes(dest: Destination, shard: Shard | None) -> list[tuple[Shard | None, str]]:
    """The index or indexes to export: the shard's; else the whole archive's, or, in an
    archive only shards have written to, every shard's."""
    if shard is not None:
        return [(shard, manifest_name(shard))]
    whole = manifest_name(None)
    if dest.read(whole, 1) is not None:
        return [(None, whole)]
    shards = [s for s in dest.states() if s is not None]
    return [(s, manifest_name(s)) for s in shards] or [(None, whole)]


def export(
    archive: Destination | Path, shard: Shard | None, output_format: str, out: TextIO
) -> int:
    """Write the manifest to `out`; how many calls. An index that lags its parts is said
    once the parts were read (a warning: the parts are used as they are)."""
    dest = as_destination(archive)
    documents = [(s, name, read_index(dest, name, s)) for s, name in indexes(dest, shard)]
    changed: dict[str, list[str]] = {name: [] for _, name, _ in documents}
    calls = (call for s, name, index in documents
             for call in _calls(dest, s, index, changed[name]))  # fmt: skip
    if output_format == "json":
        updated = max(index["updated_at"] for _, _, index in documents)
        count = _json(calls, updated, documents[0][2]["tool_version"], out)
    elif output_format == "jsonl":
        count = _jsonl(calls, out)
    else:
        count = _csv(calls, out)
    for s, name, index in documents:
        lagging = changed[name] + _unlisted(dest, s, index)
        if lagging:
            lag = IndexLag(name, tuple(lagging), dest.run_holds(s))
            log.warning("%s (the export has the parts it lists, as they are)", lag.explain(),
                        extra={"event": "manifest_index_lags"})  # fmt: skip
    return count


def read_index(dest: Destination, name: str, shard: Shard | None) -> dict[str, Any]:
    """A schema-2 index, checked: each part it lists named as the tool names this index's
    parts, with its sha256 and call count. LocalError (exit 4) naming what is wrong."""
    path = dest.shown(name)
    body = dest.read(name, MAX_DOCUMENT + 1)
    if body is None:
        raise LocalError(f"no manifest at {path}: nothing was archived here yet")
    if len(body) > MAX_DOCUMENT:
        raise LocalError(f"{path} is over {MAX_DOCUMENT >> 20} MiB: not an index this tool wrote")
    try:
        index = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise LocalError(f"cannot read the manifest index {path}: {exc}") from exc
    version = index.get("schema_version") if isinstance(index, dict) else None
    if version == 1:
        raise LocalError(
            f"{path} is a schema-1 manifest (the whole manifest, in one file): the next run "
            "or sync writes schema 2; until then, read that file itself"
        )
    fields = ("updated_at", "tool_version")
    if (
        version != 2
        or not isinstance(index.get("parts"), list)
        or not all(isinstance(index.get(field), str) for field in fields)
    ):
        raise LocalError(f"{path} is not an osvi-archiver manifest index")
    for listed in index["parts"]:
        _check_listed(listed, path, shard)
    return cast(dict[str, Any], index)


def _check_listed(listed: object, path: object, shard: Shard | None) -> None:
    if not isinstance(listed, dict):
        raise LocalError(
            f"{path} lists {shorten(repr(listed), 80)} as a part: not an entry of an index "
            "(its path, call count and sha256)"
        )
    named = listed.get("path")
    if not isinstance(named, str) or part_number(named, shard) is None:
        raise LocalError(
            f"{path} lists {shorten(repr(named), 80)} as a part: not a part of this archive "
            f"(its parts are {parts_dir(shard)}/part-NNNNNN.json)"
        )
    if not isinstance(listed.get("sha256"), str) or type(listed.get("calls")) is not int:
        raise LocalError(f"{path} lists {named} without its sha256 and call count")


def _calls(
    dest: Destination, shard: Shard | None, index: dict[str, Any], changed: list[str]
) -> Iterator[dict[str, Any]]:
    """The calls of each part the index lists, in its order; a part whose sha256 is not the
    index's is used as it is and noted in `changed`."""
    for listed in index["parts"]:
        name = listed["path"]
        body = read_part(dest, name)
        calls = _part_calls(body, dest.shown(name))
        if hashlib.sha256(body).hexdigest() != listed["sha256"] or len(calls) != listed["calls"]:
            changed.append(name)
        yield from calls


def read_part(dest: Destination, name: str) -> bytes:
    path = dest.shown(name)
    body = dest.read(name, MAX_DOCUMENT + 1)
    if body is None:
        raise LocalError(f"cannot read manifest part {path}: missing, or not a regular file")
    if len(body) > MAX_DOCUMENT:
        raise LocalError(
            f"manifest part {path} is over {MAX_DOCUMENT >> 20} MiB: not a part this tool wrote"
        )
    return body


def _part_calls(body: bytes, path: object) -> list[dict[str, Any]]:
    try:
        part = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise LocalError(f"cannot read manifest part {path}: {exc}") from exc
    calls = part.get("calls") if isinstance(part, dict) else None
    if not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls):
        raise LocalError(f"manifest part {path} is not an osvi-archiver manifest part")
    return calls


def _unlisted(dest: Destination, shard: Shard | None, index: dict[str, Any]) -> list[str]:
    """The parts in the parts folder the index does not list (written after it). When the
    folder cannot be listed whole (a bucket holding keys its client cannot read), none: the
    check is advisory, and a warning says it could not be made."""
    listed = {part["path"] for part in index["parts"]}
    folder = parts_dir(shard)
    try:
        named = [f"{folder}/{name}" for name in dest.names(folder)]
    except LocalError as exc:
        log.warning("could not tell whether the manifest index lags its parts: %s", exc,
                    extra={"event": "manifest_lag_unknown"})  # fmt: skip
        return []
    return sorted(
        name for name in named if name not in listed and part_number(name, shard) is not None
    )


def index_lag(dest: Destination, shard: Shard | None, *, every: bool) -> IndexLag | None:
    """Whether the index of `shard` in a folder archive lags its parts: the parts not listed,
    and those whose sha256 or call count is not the index's, hashed (`every`: all of them, as
    `verify` does; else only those written after the index, which `status` can afford). None
    when it does not, or there is no schema-2 index to hold them against (or a bucket)."""
    if not isinstance(dest, LocalFolder):
        return None
    name = manifest_name(shard)
    try:
        index = read_index(dest, name, shard)
        since = (dest.root / name).stat().st_mtime_ns
    except (LocalError, OSError):
        return None  # no index yet, a schema-1 one, or one `manifest` itself refuses
    lagging = _unlisted(dest, shard, index)
    for listed in index["parts"]:
        path = dest.root / listed["path"]
        try:
            if every or path.lstat().st_mtime_ns > since:
                body = read_part(dest, listed["path"])
                calls = _part_calls(body, path)
                digest = hashlib.sha256(body).hexdigest()
                if digest != listed["sha256"] or len(calls) != listed["calls"]:
                    lagging.append(listed["path"])
        except (LocalError, OSError):
            lagging.append(listed["path"])  # missing: removed after the index listed it
    return IndexLag(name, tuple(sorted(lagging)), dest.run_holds(shard)) if lagging else None


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


def _jsonl(calls: Iterator[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for call in calls:
        out.write(json.dumps(call, separators=(",", ":")) + "\n")
        count += 1
    return count


def _cell(value: Any) -> Any:
    """A CSV cell: empty for null, `true`/`false` as JSON writes them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv(calls: Iterator[dict[str, Any]], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    count = 0
    for call in calls:
        error = call.get("error") or {}
        row = {**call, "error_kind": error.get("kind"), "error_message": error.get("message")}
        writer.writerow([_cell(row.get(name)) for name in CSV_FIELDS])
        count += 1
    return count
