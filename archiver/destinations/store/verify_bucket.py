"""`osvi-archiver verify` on a bucket (§2, §12): every archived call's object held against the
state, without downloading by default.

The state is the local one where this machine has a current one, else the store's snapshot
(each shard's). A HEAD of each archived object gives its size (missing, truncated) and the
sha256 its metadata carries (modified: another object was put there), a thousand calls at a
time; the listing, read a page at a time, gives the objects no state owns (unexpected).
`--deep` downloads each object and hashes its bytes (the store's own copy rotting, or an
object rewritten with its metadata copied). Reads only: no lock, nothing written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from typing import TYPE_CHECKING, Any

import obstore

from archiver.archive.names import STATE_DIR, STATE_FILE, is_tool_file
from archiver.archive.outcomes import Status
from archiver.archive.shard import shard_label
from archiver.destinations.store.client import META_SHA256, store_error
from archiver.destinations.verify_folder import Problem, VerifyReport, owned, unexpected_detail
from archiver.errors import LocalError
from archiver.state.call_records import CallRecord
from archiver.state.database import State

if TYPE_CHECKING:
    from archiver.destinations.store.bucket import StoreDestination

_IN_FLIGHT = 32  # HEADs (or downloads, with --deep) at once
_BATCH = 1000  # archived calls checked a batch at a time: memory flat in the archive's size


async def verify_store(dest: StoreDestination, *, deep: bool = False) -> VerifyReport:
    report = VerifyReport()
    shards = await asyncio.to_thread(dest.states)
    if not shards:
        raise LocalError(
            f"{dest.where} holds no osvi-archiver state (no {STATE_DIR}/{STATE_FILE} snapshot, "
            "no shard's)"
        )
    with contextlib.ExitStack() as stack:
        states: list[State] = []
        for shard in shards:
            state = stack.enter_context(dest.viewing(shard))
            if state is None:
                continue
            states.append(state)
            report.states.append(shard_label(shard) or "whole archive")
            archived = (r for r in state.calls() if r.status == Status.ARCHIVED)
            while batch := list(itertools.islice(archived, _BATCH)):
                for problem, read in await _each(dest, batch, deep=deep):
                    report.checked += 1
                    report.bytes_checked += read
                    if problem is not None:
                        report.problems.append(problem)
        pages = dest.pages()
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            for item in page:
                path = item["path"]
                if not tool_object(path) and not any(owned(s, path) for s in states):
                    detail = unexpected_detail(path, "file")
                    report.problems.append(Problem("unexpected", path, None, detail))
    return report


def tool_object(path: str) -> bool:
    """The tool's own object: under one of its top-level names (the state, the manifest's
    parts, the run reports), or named as one of its files."""
    first, _, rest = path.partition("/")
    folder, _, name = path.rpartition("/")
    return (bool(rest) and is_tool_file("", first)) or is_tool_file(folder, name)


async def _each(
    dest: StoreDestination, archived: list[CallRecord], *, deep: bool
) -> list[tuple[Problem | None, int]]:
    checks = asyncio.Semaphore(_IN_FLIGHT)

    async def one(record: CallRecord) -> tuple[Problem | None, int]:
        async with checks:
            return await _check(dest, record, deep=deep)

    return await asyncio.gather(*(one(r) for r in archived))


async def _check(
    dest: StoreDestination, record: CallRecord, *, deep: bool
) -> tuple[Problem | None, int]:
    """One archived call's object, by a HEAD (its size and sha256 metadata), then with
    `deep` its bytes."""
    path = record.path or ""
    if record.path is None or record.bytes is None or record.sha256 is None:
        return Problem("missing", path, record.call_id, "no object in the state"), 0
    try:
        found = await obstore.get_async(dest.store, path, options={"head": True})
    except FileNotFoundError:
        return Problem("missing", path, record.call_id, "no object at this key"), 0
    except Exception as exc:
        raise store_error(exc, dest.key_url(path), "read") from exc
    size = found.meta["size"]
    if size != record.bytes:
        kind = "truncated" if size < record.bytes else "modified"
        detail = f"expected {record.bytes} bytes, found {size}"
        return Problem(kind, path, record.call_id, detail), 0
    if found.attributes.get(META_SHA256) != record.sha256:
        detail = "its sha256 metadata differs (another object was put at this key)"
        return Problem("modified", path, record.call_id, detail), 0
    if not deep:
        return None, 0
    digest, read = await _hash(dest, path)
    if digest != record.sha256:
        return Problem("modified", path, record.call_id, "sha256 differs"), read
    return None, read


async def _hash(dest: StoreDestination, path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    read = 0
    try:
        found: Any = await obstore.get_async(dest.store, path)
        async for chunk in found.stream(min_chunk_size=1 << 20):
            digest.update(chunk)
            read += len(chunk)
    except Exception as exc:
        raise store_error(exc, dest.key_url(path), "download") from exc
    return digest.hexdigest(), read
