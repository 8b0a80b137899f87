"""A bucket destination's state: kept on local disk, its snapshots kept in the store (§12).

While a run lasts, the local SQLite state (`<state_dir>/<destination>/.osvi-archiver/...`) is
the truth, as in a folder. A consistent copy of it (SQLite's backup API, from a connection of
its own) is uploaded to `.osvi-archiver/[shard-K-of-N/]state.sqlite3` under the prefix every
SNAPSHOT_INTERVAL during a run and at its end.

A snapshot is known by a random id, in the object's metadata and, once the store has
confirmed the upload (a HEAD reads it back), in the state that uploaded it (`snapshot_id`):
the lineage a state descends from. A number could not tell two lineages apart (issue 21: a
machine whose last upload failed kept a generation as high as another machine's, trusted its
own state, and forgot the other's calls for good). A run starting (under its lock):

- with no local state, restores the snapshot; with no snapshot either, rebuilds the state from
  the store itself (every object whose metadata names a call of this shard, with the tool's
  sha256, is archived);
- with a local state of the snapshot's lineage (it uploaded it, or restored it), keeps its
  own: it is at least as new;
- with a local state of another lineage (another machine ran since this one's last good
  upload, or this one's upload failed or was cut), merges them: the snapshot is the base, and
  each call this machine holds archived and the snapshot does not is kept when the bucket
  holds its object with the same size and sha256 (a HEAD each), other outcomes the snapshot
  lacks are kept too. No call either machine archived is lost or downloaded again.

A snapshot is uploaded only over the one its run started from: one that changed meanwhile
(another machine, which the lease should make impossible) is never overwritten. A local state
or a snapshot that is not an osvi-archiver state (an empty file, another application's
tables) is never taken for an empty one: a local one is set aside, a snapshot is passed over
for the rebuild from the objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError

from archiver.archive.ids import canonical_uuid
from archiver.archive.names import STATE_DIR, STATE_FILE, is_tool_file, state_folder
from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard, in_shard
from archiver.destinations.store.client import (
    META_CALL,
    META_KIND,
    META_SHA256,
    Bucket,
    StoreError,
    store_error,
)
from archiver.destinations.store.uploads import PART_UPLOADS, UPLOAD_CHUNK
from archiver.state import connection as sqlite
from archiver.state.call_records import CallRecord
from archiver.state.database import State
from archiver.state.meta import (
    DESTINATION_ID,
    GENERATION_KEY,
    LAST_SUCCESS_KEY,
    REBUILD_KEY,
    SNAPSHOT_KEY,
    WAITING_KEY,
)

log = logging.getLogger("archiver.store")
META_SNAPSHOT = "osvisnapshot"  # the snapshot object's metadata: its id
# Before 2026-12 (issue 21), snapshots were numbered: read to compare two such states only.
META_GENERATION = "osvigeneration"
REBUILT_RUN = "rebuilt-from-store"  # the run_id of the calls a rebuild found
# The destination's identity: a random id created in the store by its first run, kept in each
# state. A local state of another id is another destination's (the same bucket name at another
# endpoint or account, a bucket emptied and reused): it is never trusted.
ID_KEY = f"{STATE_DIR}/destination-id"
_HEADS = 32  # metadata requests in flight while rebuilding or merging
REBUILD_PAGE = 1000  # objects a rebuild reads and commits at a time


def snapshot_key(shard: Shard | None) -> str:
    return (state_folder(Path(), shard) / STATE_FILE).as_posix()


@dataclasses.dataclass(frozen=True)
class Remote:
    """The snapshot the store holds: its id (None: uploaded before ids), its old number."""

    ident: str | None
    generation: int


def remote(dest: Bucket, shard: Shard | None) -> Remote | None:
    """The store's snapshot of `shard`, from a HEAD; None when there is none."""
    key = snapshot_key(shard)
    try:
        found = obstore.get(dest.store, key, options={"head": True})
    except FileNotFoundError:
        return None
    except Exception as exc:
        raise store_error(exc, dest.key_url(key), "read") from exc
    attributes = found.attributes
    generation = str(attributes.get(META_GENERATION) or "0")
    return Remote(attributes.get(META_SNAPSHOT), int(generation) if generation.isdigit() else 0)


def save(dest: Bucket, state: State) -> None:
    """Upload a snapshot of `state` (in a worker thread: the run goes on), over the one this
    state descends from only, and record its id once the store shows it."""
    state.commit()
    key = snapshot_key(state.shard)
    found = remote(dest, state.shard)
    if found is not None and not descends(state.get_meta(SNAPSHOT_KEY), state, found):
        raise StoreError(
            f"the state's snapshot {dest.key_url(key)} is not the one this run started from "
            "(another machine wrote it meanwhile): not overwritten; the next run merges them"
        )
    ident = secrets.token_hex(8)
    copy = state.path.with_name(f".{STATE_FILE}.snapshot")
    copy.unlink(missing_ok=True)
    try:
        sqlite.backup(state.path, copy)
        try:
            with copy.open("rb") as handle:
                obstore.put(dest.store, key, handle, attributes={META_SNAPSHOT: ident},
                            chunk_size=UPLOAD_CHUNK, max_concurrency=PART_UPLOADS)  # fmt: skip
        except Exception as exc:
            raise store_error(exc, dest.key_url(key), "upload the state's snapshot to") from exc
    finally:
        copy.unlink(missing_ok=True)
    shown = remote(dest, state.shard)
    if shown is None or shown.ident != ident:
        raise StoreError(f"the store does not show the state's snapshot {dest.key_url(key)} "
                         "just uploaded: its lineage is left as it was")  # fmt: skip
    state.set_meta(SNAPSHOT_KEY, ident)
    log.debug("state snapshot %s uploaded", ident, extra={"event": "snapshot_saved"})


def descends(mine: str | None, state: State | Path, found: Remote) -> bool:
    """Whether a local state (its snapshot id `mine`) descends from the store's snapshot:
    by id; between two states of before ids, by their numbers as before."""
    if found.ident is not None or mine is not None:
        return mine == found.ident
    if isinstance(state, State):
        generation = state.get_meta(GENERATION_KEY) or "0"
    else:
        generation = sqlite.read_meta(state, GENERATION_KEY) or "0"
    return int(generation) >= found.generation if generation.isdigit() else False


def fetch(dest: Bucket, shard: Shard | None, root: Path) -> bool:
    """The store's snapshot as the state of `root` (whole, checked, ours); False when there
    is none, or it is not an osvi-archiver state (said: the caller rebuilds instead)."""
    from archiver.archive.storage import ensure_folder

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
    why = sqlite.foreign(temp) or (None if sqlite.intact(temp) else "not a whole database")
    if why is not None:
        temp.unlink(missing_ok=True)
        log.warning("the state's snapshot %s is %s, not an osvi-archiver state: passed over",
                    dest.key_url(key), why, extra={"event": "snapshot_foreign"})  # fmt: skip
        return False
    for companion in ("-wal", "-shm"):
        target.with_name(target.name + companion).unlink(missing_ok=True)
    temp.chmod(0o600)
    temp.replace(target)
    return True


def store_id(dest: Bucket, *, create: bool = False) -> str | None:
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


def local_is_current(dest: Bucket, shard: Shard | None) -> bool:
    """Whether this machine's state of `shard` is there, ours, of this destination, and of
    the store's snapshot's lineage (another machine may have run since)."""
    local = state_folder(dest.root, shard) / STATE_FILE
    if not local.is_file() or _unusable(local, store_id(dest)) is not None:
        return False
    if sqlite.read_meta(local, REBUILD_KEY) is not None:  # a rebuild under way: not whole
        return False
    found = remote(dest, shard)
    return found is None or descends(sqlite.read_meta(local, SNAPSHOT_KEY), local, found)


def _unusable(local: Path, ident: str | None) -> str | None:
    """Why a local state cannot be this destination's (None: it can)."""
    why = sqlite.foreign(local)
    if why is not None:
        return f"{why}, not an osvi-archiver state"
    if sqlite.read_meta(local, DESTINATION_ID) != ident:
        return ("not of this destination as the store knows it (another endpoint or "
                "account with this bucket name, or the bucket was emptied)")  # fmt: skip
    return None


async def bring(dest: Bucket, shard: Shard | None) -> None:
    """Make the local state the latest (see the module's docstring); under the run's lock."""
    ident = await asyncio.to_thread(store_id, dest, create=True)
    assert ident is not None
    local = state_folder(dest.root, shard) / STATE_FILE
    if local.is_file() and (why := _unusable(local, ident)) is not None:
        _set_aside(local, dest, why)
    await _bring(dest, shard, local, ident)
    with State(dest.root, shard=shard) as state:
        state.set_meta(DESTINATION_ID, ident)


def _set_aside(local: Path, dest: Bucket, why: str) -> None:
    """A local state that cannot be this destination's: kept, renamed, never used."""
    aside = local.with_name(f"{local.name}.set-aside-{int(time.time())}")
    log.warning("the local state %s is %s: set aside as %s", local, why, aside.name,
                extra={"event": "state_set_aside"})  # fmt: skip
    local.replace(aside)
    for companion in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            local.with_name(local.name + companion).replace(aside.with_name(aside.name + companion))


async def _bring(dest: Bucket, shard: Shard | None, local: Path, ident: str) -> None:
    found = await asyncio.to_thread(remote, dest, shard)
    if local.is_file() and sqlite.read_meta(local, REBUILD_KEY) is not None:  # noqa: ASYNC240
        await _rebuilt(dest, shard, ident, resumed=True)  # a rebuild stopped: go on with it
        if found is not None:  # and another machine's snapshot meanwhile: merged into it
            await merge(dest, shard, local, found)
        return
    if local.is_file():  # noqa: ASYNC240 (one stat, before the run starts)
        if found is None or descends(sqlite.read_meta(local, SNAPSHOT_KEY), local, found):
            return
        await merge(dest, shard, local, found)
        return
    if found is not None and await asyncio.to_thread(fetch, dest, shard, dest.root):
        if found.ident is not None:
            with State(dest.root, shard=shard) as state:
                state.set_meta(SNAPSHOT_KEY, found.ident)
        log.info("restored the state of %s from its snapshot", dest.where,
                 extra={"event": "snapshot_restored"})  # fmt: skip
        return
    await _rebuilt(dest, shard, ident, resumed=False)


async def _rebuilt(dest: Bucket, shard: Shard | None, ident: str, *, resumed: bool) -> None:
    log.warning(
        "no state for %s here or in the store: %s it from the store's listing",
        dest.where,
        "going on rebuilding" if resumed else "rebuilding",
        extra={"event": "state_rebuilding"},
    )
    count = await rebuild(dest, shard, ident)
    log.warning("rebuilt the state of %s (%d archived calls found)", dest.where, count,
                extra={"event": "state_rebuilt"})  # fmt: skip


async def merge(dest: Bucket, shard: Shard | None, local: Path, found: Remote) -> None:
    """This machine's state and the store's snapshot have diverged (another machine ran
    since this one's last good upload, or that upload failed): the snapshot is the base, and
    what this machine holds that it lacks is added, each archived call only when the bucket
    holds its object with its size and sha256. The merged state replaces the local one."""
    with tempfile.TemporaryDirectory(prefix=".merging-", dir=dest.root) as temp:
        root = Path(temp)
        if not await asyncio.to_thread(fetch, dest, shard, root):
            return  # no usable snapshot after all: this machine's state is the whole truth
        with State(root, shard=shard) as merged:
            kept, dropped = await _adopt(dest, merged, local)
            _adopt_meta(merged, local, watermarks=not dropped)
            if found.ident is not None:
                merged.set_meta(SNAPSHOT_KEY, found.ident)
            merged.set_meta(DESTINATION_ID, sqlite.read_meta(local, DESTINATION_ID) or "")
        merged_path = state_folder(root, shard) / STATE_FILE
        for companion in ("-wal", "-shm"):
            local.with_name(local.name + companion).unlink(missing_ok=True)
        merged_path.replace(local)
    log.warning(
        "the local state of %s and its snapshot in the store had diverged (another machine "
        "ran since this one's last snapshot, or that upload failed): merged them, keeping "
        "%d calls of this machine's%s",
        dest.where,
        kept,
        f" ({dropped} archived here whose objects the bucket does not hold: left to be "
        "archived again)"
        if dropped
        else "",
        extra={"event": "states_merged", "kept": kept, "dropped": dropped},
    )


async def _adopt(dest: Bucket, merged: State, local: Path) -> tuple[int, int]:
    """Add the local state's outcomes the snapshot lacks; (kept, dropped) counts."""
    kept = dropped = 0
    records = merged.diverging(local)
    while batch := await asyncio.to_thread(_take, records, 1000):
        checks = [r for r in batch if r.status == Status.ARCHIVED]
        held = await _held(dest, checks)
        chosen = [r for r in batch if r.status != Status.ARCHIVED or r.call_id in held]
        dropped += len(checks) - len(held)
        kept += len(chosen)
        merged.adopt(chosen)
    return kept, dropped


def _take(records: Iterator[CallRecord], count: int) -> list[CallRecord]:
    return list(itertools.islice(records, count))


async def _held(dest: Bucket, records: list[CallRecord]) -> set[str]:
    """The calls among `records` whose objects the bucket holds, size and sha256 as said."""
    heads = asyncio.Semaphore(_HEADS)

    async def one(record: CallRecord) -> str | None:
        if record.path is None:
            return None
        async with heads:
            try:
                found = await obstore.get_async(dest.store, record.path, options={"head": True})
            except FileNotFoundError:
                return None
            except Exception as exc:
                raise store_error(exc, dest.key_url(record.path), "read") from exc
        same = found.meta["size"] == record.bytes
        return (
            record.call_id if same and found.attributes.get(META_SHA256) == record.sha256 else None
        )

    return {call_id for call_id in await asyncio.gather(*(one(r) for r in records)) if call_id}


def _adopt_meta(merged: State, local: Path, *, watermarks: bool) -> None:
    """The local state's watermarks where they are further (only when every call it
    archived is kept: a claim with a call dropped is not made), and its last success."""
    if watermarks:
        for key, value in sqlite.read_metas(local, "sync_watermark").items():
            current = merged.get_meta(key)
            if current is None or _later(value, current):
                merged.set_meta(key, value)
    mine = sqlite.read_meta(local, LAST_SUCCESS_KEY)
    theirs = merged.get_meta(LAST_SUCCESS_KEY)
    if mine and (theirs is None or _number(mine) > _number(theirs)):
        merged.set_meta(LAST_SUCCESS_KEY, mine)


def _later(one: str, other: str) -> bool:
    from datetime import datetime

    try:
        return datetime.fromisoformat(one) > datetime.fromisoformat(other)
    except (ValueError, TypeError):
        return False


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


async def rebuild(dest: Bucket, shard: Shard | None, ident: str) -> int:
    """A state from the objects themselves; how many archived calls were found. The listing
    is read a page at a time and each page's metadata (a HEAD an object, _HEADS at once)
    written before the next: memory stays flat whatever the bucket holds. A sidecar listed
    before its recording (`<stem>.call.json` sorts before `<stem>.mp4`) waits for it; sidecars
    of no recording are left out. Each page is committed with where the listing got to
    (REBUILD_KEY): a rebuild stopped (a signal, --max-duration) goes on from there next time,
    and a state with that mark is never taken for a whole one."""
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

    total = 0
    with State(dest.root, shard=shard) as state:
        after = state.get_meta(REBUILD_KEY)
        # sidecars whose recording is not listed yet (kept across a stop)
        waiting: dict[str, dict[str, Any]] = json.loads(state.get_meta(WAITING_KEY) or "{}")
        state.set_meta(DESTINATION_ID, ident)
        state.set_meta(REBUILD_KEY, after or "")
        pages = dest.pages(size=REBUILD_PAGE, after=after or None)
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
            state.set_meta(WAITING_KEY, json.dumps(waiting))
            state.set_meta(REBUILD_KEY, page[-1]["path"])  # committed with the page
            total += len(ids)
        state.delete_meta(REBUILD_KEY)
        state.delete_meta(WAITING_KEY)
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
