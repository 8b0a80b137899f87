"""An object store as the archive (§12): S3, Google Cloud Storage, Azure Blob Storage through
obstore (Rust's object_store: the standard credential chains, multipart uploads, conditional
puts); obstore is imported here and in uploads, lease, snapshots, storeverify and storeerrors
only.

A recording is downloaded and verified exactly as for a folder, into a `.part` in a local
spool (`<state_dir>/<destination>/`, at most `concurrency` of them), then uploaded under its
final key: one PUT up to UPLOAD_CHUNK, a multipart upload above, which the store shows only
once it is completed. The object carries its sha256, size and call id as metadata; a HEAD then
confirms the store holds that size and that sha256 before the call is recorded as archived.
A cancelled upload (SIGINT, SIGTERM) is aborted at once, even with a slow part in flight,
never left half done (store/uploads.py). A kill -9 leaves an incomplete upload, invisible,
that the bucket's lifecycle rule removes (README, "Archiving into a bucket"). The store refusing one
object (a 4xx on its key, while a write beside it succeeds) is that call's outcome,
`store_refused`; refusing the bucket, the prefix or the credentials stops the run (exit 4).

Memory stays bounded: UPLOADS uploads at once, each holding two parts (store/uploads.py).
Credentials never pass through this module: obstore reads them from the environment (AWS_*,
GOOGLE_*, AZURE_*) and the provider chains, and its error messages name keys, never secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore

from archiver.archive.names import STATE_DIR, STATE_FILE, probe_name, states_in
from archiver.archive.shard import from_label
from archiver.archive.storage import PartFile, remove_quietly
from archiver.config.out_dir import StoreUrl, default_state_dir
from archiver.destinations import heap
from archiver.destinations.base import Destination, Holding, Stored
from archiver.destinations.lock import ArchiveLock
from archiver.destinations.store.client import (
    META_CALL,
    META_KIND,
    META_SHA256,
    META_SIZE,
    Bucket,
    StoreError,
    reason,
    refusal,
    store_error,
    store_of,
)
from archiver.destinations.store.lease import Lease, LeaseHolding
from archiver.destinations.store.uploads import (
    PART_UPLOADS,
    UPLOAD_CHUNK,
    UPLOADS,
    UploadCancelled,
    finished_or_aborted,
    first_bytes,
    upload_file,
)
from archiver.errors import LocalError, StoreRefused
from archiver.state.database import State

if TYPE_CHECKING:
    from archiver.archive.shard import Shard
    from archiver.config.settings import Settings
    from archiver.state.call_records import Filed

log = logging.getLogger("archiver.store")
# A media type as a header may carry it: what the recording host sent, checked (a control
# character in it made obstore's request signing panic).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class StoreDestination(Bucket, Destination):
    aborts_on_cancel = True
    rebuilds = True

    def __init__(
        self, url: StoreUrl, store: Any, root: Path, storage_class: str | None = None
    ) -> None:
        Bucket.__init__(self, store, str(url), root)
        self.url = url
        self._storage_class = storage_class
        self._uploads = asyncio.Semaphore(UPLOADS)
        self.lease_store = store  # the lease's own client, with short timeouts (from_settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreDestination:
        assert isinstance(settings.out_dir, StoreUrl)
        heap.for_bucket()  # bounded memory for the spool's and the uploads' buffers
        url = settings.out_dir
        # The same bucket name at another endpoint or account is another destination.
        account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "") if url.scheme == "az" else ""
        root = (settings.state_dir or default_state_dir()) / url.key(
            f"{settings.store_endpoint or ''}|{account}"
        )
        destination = cls(url, store_of(url, settings), root, settings.store_storage_class)
        destination.lease_store = store_of(url, settings, quick=True)
        return destination

    def prepare(self) -> None:
        super().prepare()
        # One listing request: the bucket exists and the credentials may read it.
        next(self.listing(STATE_DIR, recursive=True), None)

    def holding(self, shard: Shard | None) -> Holding:
        """A local `flock` (two runs of one machine share its local state) and the lease in
        the store (runs of other machines)."""
        from archiver.archive.names import LOCK_FILE, state_folder

        key = (state_folder(Path(), shard) / LOCK_FILE).as_posix()
        lease = Lease(self.lease_store, key, self.where)
        return LeaseHolding(ArchiveLock(self.root, shard), lease)

    async def bring_state(self, shard: Shard | None) -> None:
        from archiver.destinations.store.snapshots import bring

        await bring(self, shard)

    def save_state(self, state: State) -> None:
        from archiver.destinations.store.snapshots import save

        save(self, state)

    def attributes(self, stored: Stored) -> dict[str, str]:
        found = {META_SHA256: stored.sha256, META_SIZE: str(stored.size),
                 META_CALL: stored.call_id, META_KIND: stored.kind}  # fmt: skip
        if stored.content_type and _MEDIA_TYPE.fullmatch(stored.content_type):
            found["Content-Type"] = stored.content_type  # else none: the host's is not sent on
        if self._storage_class:
            found["Storage-Class"] = self._storage_class
        return found

    async def publish(self, part: PartFile, relative: str, stored: Stored) -> None:
        await part.seal()
        work = asyncio.ensure_future(self._put(part.path, relative, stored))
        await finished_or_aborted(work, relative)
        await remove_quietly(part.path)

    async def _put(self, path: Path, key: str, stored: Stored) -> None:
        await self.upload(path, key, stored.size, self.attributes(stored))
        await self.confirm(key, stored)

    async def upload(self, path: Path, key: str, size: int, attributes: dict[str, str]) -> None:
        """`path` under `key`: whole or not at all (a multipart upload is aborted at once when
        cancelled). Small files go up in one PUT, at once; large ones UPLOADS at a time (their
        buffers are the memory bound). The store refusing this key alone (while it accepts a
        write beside it) is the call's StoreRefused; refusing the bucket, a StoreError."""
        try:
            if size <= UPLOAD_CHUNK:
                await upload_file(self.store, path, key, size, attributes)
                return
            async with self._uploads:
                await upload_file(self.store, path, key, size, attributes)
        except (asyncio.CancelledError, LocalError, UploadCancelled):
            raise
        except BaseException as exc:  # obstore's PanicException is a BaseException
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            refused = refusal(exc)
            if refused is None:
                raise store_error(exc, self.key_url(key), "upload to") from exc
            await self._probe(key, refused)
            raise refused from exc

    async def _probe(self, key: str, refused: StoreRefused) -> None:
        """After a refusal of `key`: a write of a few bytes beside it (then deleted) tells a
        refusal of this one key (the call fails) from one of the whole folder or bucket
        (StoreError: the run stops)."""
        folder = key.rpartition("/")[0]
        probe = probe_name(folder, secrets.token_hex(8))
        try:
            await obstore.put_async(self.store, probe, b"probe", use_multipart=False)
        except Exception as exc:
            raise StoreError(
                f"the store refuses writes under {self.key_url(folder or '')}: {reason(exc)} "
                f"(it refused {self.key_url(key)}: {refused})"
            ) from exc
        with contextlib.suppress(Exception):  # left behind: a tool file, skipped everywhere
            await obstore.delete_async(self.store, probe)
        log.warning(
            "the store refused %s alone (a write beside it succeeded): %s",
            self.key_url(key),
            refused,
            extra={"event": "store_refused", "key": key},
        )

    async def confirm(self, key: str, stored: Stored) -> None:
        """What the store holds under `key` is `stored`: size and sha256 metadata (a HEAD)."""
        try:
            found = await obstore.get_async(self.store, key, options={"head": True})
        except Exception as exc:
            raise store_error(exc, self.key_url(key), "read back") from exc
        size, sha256 = found.meta["size"], found.attributes.get(META_SHA256)
        if size != stored.size or sha256 != stored.sha256:  # this object's outcome
            raise StoreRefused(
                f"{self.key_url(key)} holds {size} bytes with sha256 {sha256!r} after its "
                f"upload of {stored.size} bytes with {stored.sha256}: the store did not keep "
                "what was sent"
            )

    def write(
        self, relative: str, chunks: Iterable[bytes], file_mode: int, temp_dir: str | None = None
    ) -> None:
        """One PUT for a small file, a multipart upload streamed from `chunks` for a large
        one (a run report of millions of calls): either way atomic."""
        head, rest = first_bytes(iter(chunks), UPLOAD_CHUNK)
        try:
            if rest is None:
                obstore.put(self.store, relative, head, use_multipart=False)
            else:
                source = itertools.chain([head], rest)
                obstore.put(self.store, relative, source, chunk_size=UPLOAD_CHUNK,
                            max_concurrency=PART_UPLOADS)  # fmt: skip
        except Exception as exc:
            raise store_error(exc, self.key_url(relative), "write") from exc

    def read(self, relative: str, limit: int | None = None) -> bytes | None:
        try:
            if limit is None:
                return bytes(obstore.get(self.store, relative).bytes())
            found = obstore.get(self.store, relative, options={"range": (0, limit)})
            return bytes(found.bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            if "range" in str(exc).lower() or "416" in str(exc):  # shorter than `limit`
                return self.read(relative)
            raise store_error(exc, self.key_url(relative), "read") from exc

    def present(self, relatives: Iterable[str], folder: str) -> set[str]:
        skipped: list[str] = []
        there = {item["path"] for item in self.listing(folder, skipped=skipped)}
        wanted = set(relatives)
        if skipped:  # the listing may have missed some: a HEAD each for those not seen
            there |= {name for name in wanted - there if self.head(name) is not None}
        return wanted & there

    def remove(self, relative: str) -> None:
        try:
            obstore.delete(self.store, relative)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise store_error(exc, self.key_url(relative), "delete") from exc

    def names(self, folder: str) -> list[str]:
        """Every file name in `folder`; a LocalError when keys there could not be read (the
        names could be incomplete: run reports are then not pruned)."""
        skipped: list[str] = []
        found = [item["path"].rsplit("/", 1)[-1] for item in self.listing(folder, skipped=skipped)]
        if skipped:
            raise StoreError(
                f"{self.key_url(folder)} holds keys the store client cannot read "
                f"({', '.join(repr(key) for key in skipped[:3])}): its listing is incomplete"
            )
        return found

    def on_disk(self) -> Callable[[Filed], bool]:
        """The state is trusted: a rerun does not send a HEAD per archived call (millions);
        `verify` finds an object deleted behind the tool's back."""
        return lambda filed: True

    def states(self) -> list[Shard | None]:
        """From the snapshots in the store, and the local states (a first run's)."""
        found: set[str] = set()
        for item in self.listing(STATE_DIR, recursive=True):
            parts = item["path"].split("/")
            if parts[-1] == STATE_FILE and len(parts) in (2, 3):
                found.add(parts[1] if len(parts) == 3 else "")
        local = states_in(self.root)  # a first run's, before its first snapshot
        whole = "" in found or None in local
        shards = {s for s in (from_label(label) for label in found if label) if s}
        shards |= {s for s in local if s is not None}
        return ([None] if whole else []) + sorted(shards, key=lambda s: (s[1], s[0]))

    @contextlib.contextmanager
    def viewing(self, shard: Shard | None) -> Iterator[State | None]:
        """The local state when it is as new as the store's snapshot, else the snapshot,
        fetched into a temporary folder (the local one belongs to the runs, under their
        lock)."""
        from archiver.destinations.store.snapshots import fetch, local_is_current

        if local_is_current(self, shard):
            with State(self.root, readonly=True, shard=shard) as state:
                yield state
                return
        with tempfile.TemporaryDirectory(prefix="osvi-archiver-view-") as temp:
            if not fetch(self, shard, Path(temp)):
                yield None
                return
            with State(Path(temp), readonly=True, shard=shard) as state:
                yield state
