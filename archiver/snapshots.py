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
import dataclasses
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError

from archiver import sqlite
from archiver.ids import canonical_uuid
from archiver.names import STATE_DIR, STATE_FILE, is_tool_file, state_folder
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
# The destination's identity: a random id created in the store by its first run, kept in each
# state. A local state of another id is another destination's (the same bucket name at another
# endpoint or account, a bucket emptied and reused): it is never trusted.
ID_KEY = f"{STATE_DIR}/destination-id"
DESTINATION_ID = "destination_id"
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


def store_id(dest: StoreDestination, *, create: bool = False) -> str | None:
    """The destination's id, as the store keeps it; created (create-only) when `create`."""
    for _ in range(2):
        try:
            return bytes(obstore.get(dest.store, ID_KEY).bytes()).decode("ascii", "replace")
        except FileNotFoundError:
            if not create:
                return None
        except Exception as exc:
            raise store_error(exc, dest.key_url(ID_KEY), "read") from exc
        try:
            fresh = secrets.token_hex(16)
            obstore.put(dest.store, ID_KEY, fresh.encode(), mode="create")
            return fresh
        except AlreadyExistsError:
            continue  # another run created it first: read it
        except Exception as exc:
            raise store_error(exc, dest.key_url(ID_KEY), "write") from exc
    raise StoreError(f"cannot read {dest.key_url(ID_KEY)}")


def local_is_current(dest: StoreDestination, shard: Shard | None) -> bool:
    """Whether this machine's state of `shard` is there, of this destination, and at least
    as new as the store's snapshot (another machine may have run since)."""
    local = state_folder(dest.root, shard) / STATE_FILE
    if not local.is_file() or sqlite.read_meta(local, DESTINATION_ID) != store_id(dest):
        return False
    remote = _remote_generation(dest, shard)
    return remote is None or int(sqlite.read_meta(local, GENERATION_KEY) or 0) >= remote


async def bring(dest: StoreDestination, shard: Shard | None) -> None:
    """Make the local state the latest (see the module's docstring); under the run's lock."""
    ident = await asyncio.to_thread(store_id, dest, create=True)
    assert ident is not None
    local = state_folder(dest.root, shard) / STATE_FILE
    if local.is_file() and sqlite.read_meta(local, DESTINATION_ID) != ident:
        _set_aside(local, dest)
    await _bring(dest, shard, local)
    with State(dest.root, shard=shard) as state:
        state.set_meta(DESTINATION_ID, ident)


def _set_aside(local: Path, dest: StoreDestination) -> None:
    """A local state of another destination: kept, renamed, never used for this one."""
    aside = local.with_name(f"{local.name}.other-destination-{int(time.time())}")
    log.warning(
        "the local state %s is not of %s as the store knows it (another endpoint or account "
        "with this bucket name, or the bucket was emptied): set aside as %s",
        local,
        dest.where,
        aside.name,
        extra={"event": "state_set_aside"},
    )
    local.replace(aside)
    for companion in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            local.with_name(local.name + companion).replace(aside.with_name(aside.name + companion))


async def _bring(dest: StoreDestination, shard: Shard | None, local: Path) -> None:
    remote = await asyncio.to_thread(_remote_generation, dest, shard)
    if local.is_file():  # noqa: ASYNC240 (one stat, before the run starts)
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
    """A state from the objects themselves; how many archived calls were found. The listing
    is read a page at a time and each page's metadata (a HEAD an object, _HEADS at once)
    written before the next: memory stays flat whatever the bucket holds. A sidecar listed
    before its recording (`<stem>.call.json` sorts before `<stem>.mp4`) waits for it; sidecars
    of no recording are left out."""
    heads = asyncio.Semaphore(_HEADS)

    async def head(path: str) -> tuple[str, dict[str, Any], Any] | None:
        async with heads:
            try:
                found = await obstore.get_async(dest.store, path, options={"head": True})
            except FileNotFoundError:
                return None  # deleted since it was listed
            except Exception as exc:
                raise store_error(exc, dest.key_url(path), "read") from exc
            return path, dict(found.attributes), found.meta

    pages = dest.pages()
    waiting: dict[str, dict[str, Any]] = {}  # sidecars whose recording is not listed yet
    total = 0
    with State(dest.root, shard=shard) as state:
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            paths = [item["path"] for item in page if _candidate(item["path"])]
            answers = await asyncio.gather(*(head(path) for path in paths))
            records, sidecars = _found(answers, shard)
            for call_id, extra in sidecars.items():
                waiting.setdefault(call_id, {}).update(extra)
            ids = sorted(records)
            if ids:
                state.claim_block(ids, REBUILT_RUN)
            for call_id in ids:
                state.record(dataclasses.replace(records[call_id], **waiting.pop(call_id, {})))
            for call_id in [c for c in waiting if c not in records]:
                known = state.get(call_id)  # its recording came in an earlier page
                if known is not None and known.status == Status.ARCHIVED:
                    state.record(dataclasses.replace(known, **waiting.pop(call_id)))
            state.commit()
            total += len(ids)
    return total


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
