"""`osvi-archiver verify` on a bucket (§2, §12): every archived call's object held against the
state, without downloading by default.

The state is the local one where this machine has it, else the store's snapshot (each shard's).
One listing of the prefix gives every object's size (missing, truncated); a HEAD of each
archived object gives the sha256 its metadata carries (modified: another object was put
there). `--deep` downloads each object and hashes its bytes (the store's own copy rotting, or
an object rewritten with its metadata copied). Objects no state owns are unexpected. Reads
only: no lock, nothing written to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

import obstore

from archiver.errors import LocalError
from archiver.names import STATE_DIR, STATE_FILE, is_tool_file
from archiver.objectstore import META_SHA256
from archiver.records import CallRecord
from archiver.shard import shard_label
from archiver.state import State
from archiver.status import Status
from archiver.storeerrors import store_error
from archiver.verify import Problem, VerifyReport, owned, unexpected_detail

if TYPE_CHECKING:
    from archiver.objectstore import StoreDestination

_IN_FLIGHT = 32  # HEADs (or downloads, with --deep) at once


async def verify_store(dest: StoreDestination, *, deep: bool = False) -> VerifyReport:
    report = VerifyReport()
    shards = await asyncio.to_thread(dest.states)
    if not shards:
        raise LocalError(
            f"{dest.where} holds no osvi-archiver state (no {STATE_DIR}/{STATE_FILE} snapshot, "
            "no shard's)"
        )
    listed = await asyncio.to_thread(
        lambda: {item["path"]: item["size"] for item in dest.listing("", recursive=True)}
    )
    with contextlib.ExitStack() as stack:
        states: list[State] = []
        for shard in shards:
            state = stack.enter_context(dest.viewing(shard))
            if state is None:
                continue
            states.append(state)
            report.states.append(shard_label(shard) or "whole archive")
            archived = [r for r in state.calls() if r.status == Status.ARCHIVED]
            for problem, read in await _each(dest, archived, listed, deep=deep):
                report.checked += 1
                report.bytes_checked += read
                if problem is not None:
                    report.problems.append(problem)
        for path in sorted(listed):
            if tool_object(path):
                continue
            if not any(owned(state, path) for state in states):
                report.problems.append(
                    Problem("unexpected", path, None, unexpected_detail(path, "file"))
                )
    return report


def tool_object(path: str) -> bool:
    """The tool's own object: under one of its top-level names (the state, the manifest's
    parts, the run reports), or named as one of its files."""
    first, _, rest = path.partition("/")
    folder, _, name = path.rpartition("/")
    return (bool(rest) and is_tool_file("", first)) or is_tool_file(folder, name)


async def _each(
    dest: StoreDestination, archived: list[CallRecord], listed: dict[str, int], *, deep: bool
) -> list[tuple[Problem | None, int]]:
    checks = asyncio.Semaphore(_IN_FLIGHT)

    async def one(record: CallRecord) -> tuple[Problem | None, int]:
        async with checks:
            return await _check(dest, record, listed, deep=deep)

    return await asyncio.gather(*(one(r) for r in archived))


async def _check(
    dest: StoreDestination, record: CallRecord, listed: dict[str, int], *, deep: bool
) -> tuple[Problem | None, int]:
    path = record.path or ""
    if record.path is None or record.bytes is None or record.sha256 is None:
        return Problem("missing", path, record.call_id, "no object in the state"), 0
    size = listed.get(path)
    if size is None:
        return Problem("missing", path, record.call_id, "no object at this key"), 0
    if size != record.bytes:
        kind = "truncated" if size < record.bytes else "modified"
        detail = f"expected {record.bytes} bytes, found {size}"
        return Problem(kind, path, record.call_id, detail), 0
    try:
        found = await obstore.get_async(dest.store, path, options={"head": True})
    except FileNotFoundError:
        return Problem("missing", path, record.call_id, "no object at this key"), 0
    except Exception as exc:
        raise store_error(exc, dest.key_url(path), "read") from exc
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
