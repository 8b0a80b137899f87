"""A bucket destination's state: kept on local disk, its snapshots kept in the store (§12).

While a run lasts, the local SQLite state (`<state_dir>/<destination>/.osvi-archiver/...`) is
the truth, as in a folder. A consistent copy of it (SQLite's backup API, from a connection of
its own) is uploaded to `.osvi-archiver/[shard-K-of-N/]state.sqlite3` under the prefix every
SNAPSHOT_INTERVAL during a run and at its end. Each snapshot has a generation number, in the
state and in the object's metadata.

A run starting (under its lock) uses the local state when it is at least as new as the
store's snapshot; else it restores the snapshot (a pod restarted on an empty disk, or a state
another machine moved on since). When the store has no snapshot either, the state is rebuilt
from the store itself: every object under the prefix whose metadata names a call of this
shard, with the tool's sha256, is archived. Either way a run re-downloads at most the calls
archived since the last snapshot (their objects are then written again, with the same bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore

from archiver import sqlite
from archiver.ids import canonical_uuid
from archiver.names import STATE_FILE, is_tool_file, state_folder
from archiver.objectstore import META_CALL, META_KIND, META_SHA256
from archiver.records import CallRecord
from archiver.shard import Shard, in_shard
from archiver.state import State
from archiver.status import Status
from archiver.storeerrors import StoreError, store_error
from archiver.uploads import PART_UPLOADS, UPLOAD_CHUNK

if TYPE_CHECKING:
    from archiver.objectstore import StoreDestination


log = logging.getLogger("archiver.store")
GENERATION_KEY = "snapshot_generation"  # state meta, and the snapshot's metadata
META_GENERATION = "osvigeneration"
REBUILT_RUN = "rebuilt-from-store"  # the run_id of the calls a rebuild found
_HEADS = 32  # metadata requests in flight while rebuilding


def snapshot_key(shard: Shard | None) -> str:
    return (state_folder(Path(), shard) / STATE_FILE).as_posix()


def save(dest: StoreDestination, state: State) -> None:
    """Upload a snapshot of `state` (in a worker thread: the run goes on)."""
    state.commit()
    generation = int(state.get_meta(GENERATION_KEY) or 0) + 1
    state.set_meta(GENERATION_KEY, str(generation))
    copy = state.path.with_name(f".{STATE_FILE}.snapshot")
    copy.unlink(missing_ok=True)
    try:
        sqlite.backup(state.path, copy)
        key = snapshot_key(state.shard)
        attributes = {META_GENERATION: str(generation)}
        try:
            with copy.open("rb") as handle:
                obstore.put(dest.store, key, handle, attributes=attributes,
                            chunk_size=UPLOAD_CHUNK, max_concurrency=PART_UPLOADS)  # fmt: skip
        except Exception as exc:
            raise store_error(exc, dest.key_url(key), "upload the state's snapshot to") from exc
    finally:
        copy.unlink(missing_ok=True)
    log.debug("state snapshot %d uploaded", generation, extra={"event": "snapshot_saved"})


def _remote_generation(dest: StoreDestination, shard: Shard | None) -> int | None:
    key = snapshot_key(shard)
    try:
        found = obstore.get(dest.store, key, options={"head": True})
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise store_error(exc, dest.key_url(key), "read") from exc
    return int(found.attributes.get(META_GENERATION) or 0)


def fetch(dest: StoreDestination, shard: Shard | None, root: Path) -> bool:
    """The store's snapshot as the state of `root` (whole, checked); False when none."""
    from archiver.storage import ensure_folder

    key = snapshot_key(shard)
    target = state_folder(root, shard) / STATE_FILE
    ensure_folder(target.parent)
    temp = target.with_name(f".{STATE_FILE}.restoring")
    try:
        with temp.open("wb") as handle:
            for chunk in obstore.get(dest.store, key).stream():
                handle.write(chunk)
    except FileNotFoundError:
        temp.unlink(missing_ok=True)
        return False
    except Exception as exc:
        temp.unlink(missing_ok=True)
        raise store_error(exc, dest.key_url(key), "download the state's snapshot from") from exc
    if not sqlite.intact(temp):
        temp.unlink(missing_ok=True)
        raise StoreError(f"the state's snapshot {dest.key_url(key)} is not a whole database")
    for companion in ("-wal", "-shm"):
        target.with_name(target.name + companion).unlink(missing_ok=True)
    temp.chmod(0o600)
    temp.replace(target)
    return True


async def bring(dest: StoreDestination, shard: Shard | None) -> None:
    """Make the local state the latest (see the module's docstring); under the run's lock."""
    local = state_folder(dest.root, shard) / STATE_FILE
    remote = await asyncio.to_thread(_remote_generation, dest, shard)
    if local.is_file():
        mine = int(sqlite.read_meta(local, GENERATION_KEY) or 0)
        if remote is None or mine >= remote:
            return
        log.warning(
            "the local state of %s is older than its snapshot in the store (%d < %d): "
            "another machine ran since; using the snapshot",
            dest.where,
            mine,
            remote,
            extra={"event": "snapshot_newer"},
        )
    if remote is not None:
        await asyncio.to_thread(fetch, dest, shard, dest.root)
        log.info("restored the state of %s from its snapshot (generation %d)", dest.where,
                 remote, extra={"event": "snapshot_restored"})  # fmt: skip
        return
    found = await rebuild(dest, shard)
    if found:
        log.warning(
            "no state for %s here or in the store: rebuilt it from the store's listing "
            "(%d archived calls found)",
            dest.where,
            found,
            extra={"event": "state_rebuilt"},
        )


async def rebuild(dest: StoreDestination, shard: Shard | None) -> int:
    """A state from the objects themselves; how many archived calls were found."""
    listed = await asyncio.to_thread(
        lambda: [item for item in dest.listing("", recursive=True) if _candidate(item["path"])]
    )
    heads = asyncio.Semaphore(_HEADS)

    async def head(path: str) -> tuple[str, dict[str, Any], Any] | None:
        async with heads:
            with contextlib.suppress(FileNotFoundError):
                found = await obstore.get_async(dest.store, path, options={"head": True})
                return path, dict(found.attributes), found.meta
        return None

    answers = await asyncio.gather(*(head(item["path"]) for item in listed))
    records, sidecars = _found(answers, shard)
    with State(dest.root, shard=shard) as state:
        ids = sorted(records)
        for start in range(0, len(ids), 1000):  # rows for them, in a stable order
            state.claim_block(ids[start : start + 1000], REBUILT_RUN)
        for record in records.values():
            extra = sidecars.get(record.call_id, {})
            state.record(CallRecord(**{**_fields(record), **extra}))
        state.commit()
    return len(records)


def _candidate(path: str) -> bool:
    """An object that may be a recording or sidecar: not the tool's own."""
    first, _, rest = path.partition("/")
    folder, _, name = path.rpartition("/")
    return not ((rest and is_tool_file("", first)) or is_tool_file(folder, name))


def _found(
    answers: list[tuple[str, dict[str, Any], Any] | None], shard: Shard | None
) -> tuple[dict[str, CallRecord], dict[str, dict[str, str]]]:
    records: dict[str, CallRecord] = {}
    sidecars: dict[str, dict[str, str]] = {}
    for answer in answers:
        if answer is None:
            continue
        path, attributes, meta = answer
        call_id = canonical_uuid(str(attributes.get(META_CALL, "")))
        sha256 = attributes.get(META_SHA256)
        if call_id is None or not sha256 or not in_shard(call_id, shard):
            continue  # not the tool's, or another shard's
        kind = attributes.get(META_KIND, "recording")
        if kind in ("metadata", "transcript"):
            sidecars.setdefault(call_id, {})[f"{kind}_path"] = path
            continue
        records[call_id] = CallRecord(
            call_id=call_id,
            status=Status.ARCHIVED,
            path=path,
            bytes=int(meta["size"]),
            sha256=sha256,
            content_type=attributes.get("Content-Type"),
            archived_at=meta["last_modified"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            attempts=0,
            run_id=REBUILT_RUN,
        )
    return records, sidecars


def _fields(record: CallRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}
