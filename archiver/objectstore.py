"""An object store as the archive (§12): S3, Google Cloud Storage, Azure Blob Storage through
obstore (Rust's object_store: the standard credential chains, multipart uploads, conditional
puts); obstore is imported here and in uploads, lease, snapshots, storeverify and storeerrors
only.

A recording is downloaded and verified exactly as for a folder, into a `.part` in a local
spool (`<state_dir>/<destination>/`, at most `concurrency` of them), then uploaded under its
final key: one PUT up to UPLOAD_CHUNK, a multipart upload above, which the store shows only
once it is completed. The object carries its sha256, size and call id as metadata; a HEAD then
confirms the store holds that size and that sha256 before the call is recorded as archived.
A cancelled upload (SIGINT, SIGTERM) is aborted, never left half done: its chunks come from
an iterator that raises on cancellation, and obstore aborts a multipart upload whose source
fails. A kill -9 leaves an incomplete upload, invisible, that the bucket's lifecycle rule
removes (README, "Archiving into a bucket").

Memory stays bounded: UPLOADS uploads at once, each holding at most PART_UPLOADS + 1 chunks.
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
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore

from archiver.destination import Destination, Holding, Stored
from archiver.errors import LocalError
from archiver.heap import fix_mmap_threshold
from archiver.lease import Lease, LeaseHolding
from archiver.location import StoreUrl, default_state_dir
from archiver.lock import ArchiveLock
from archiver.names import STATE_DIR, STATE_FILE, states_in
from archiver.shard import from_label
from archiver.state import State
from archiver.storage import PartFile, remove_quietly
from archiver.storeclient import store_of
from archiver.storeerrors import StoreError, store_error
from archiver.uploads import (
    PART_UPLOADS,
    UPLOAD_CHUNK,
    UPLOADS,
    finished_or_aborted,
    first_bytes,
    multipart,
)

if TYPE_CHECKING:
    from archiver.decide import Filed
    from archiver.settings import Settings
    from archiver.shard import Shard

log = logging.getLogger("archiver.store")
# The metadata each object of the tool's carries (S3's x-amz-meta-*, GCS's and Azure's user
# metadata): letters and digits only, the one spelling all three stores (and the proxies in
# front of S3-compatible ones, which may drop headers with `_`) accept.
META_SHA256, META_SIZE, META_CALL, META_KIND = "osvisha256", "osvisize", "osvicallid", "osvikind"


# A media type as a header may carry it: what the recording host sent, checked (a control
# character in it made obstore's request signing panic).
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class StoreDestination(Destination):
    aborts_on_cancel = True
    rebuilds = True

    def __init__(
        self, url: StoreUrl, store: Any, root: Path, storage_class: str | None = None
    ) -> None:
        self.url = url
        self.where = str(url)
        self.store = store
        self.root = root
        self._storage_class = storage_class
        self._uploads = asyncio.Semaphore(UPLOADS)
        self.lease_store = store  # the lease's own client, with short timeouts (from_settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreDestination:
        assert isinstance(settings.out_dir, StoreUrl)
        fix_mmap_threshold()  # bounded memory for the spool's and the uploads' buffers
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
        try:  # one listing request: the bucket exists and the credentials may read it
            next(iter(obstore.list(self.store, prefix=STATE_DIR, chunk_size=1)), None)
        except Exception as exc:
            raise store_error(exc, self.where, "list") from exc

    def holding(self, shard: Shard | None) -> Holding:
        """A local `flock` (two runs of one machine share its local state) and the lease in
        the store (runs of other machines)."""
        from archiver.names import LOCK_FILE, state_folder

        key = (state_folder(Path(), shard) / LOCK_FILE).as_posix()
        lease = Lease(self.lease_store, key, self.where)
        return LeaseHolding(ArchiveLock(self.root, shard), lease)

    async def bring_state(self, shard: Shard | None) -> None:
        from archiver.snapshots import bring

        await bring(self, shard)

    def save_state(self, state: State) -> None:
        from archiver.snapshots import save

        save(self, state)

    def key_url(self, relative: str) -> str:
        return f"{self.where}/{relative}"

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
        abort = asyncio.Event()
        work = asyncio.ensure_future(self._put(part.path, relative, stored, abort))
        await finished_or_aborted(work, abort, relative)
        await remove_quietly(part.path)

    async def _put(self, path: Path, key: str, stored: Stored, abort: asyncio.Event) -> None:
        await self.upload(path, key, stored.size, self.attributes(stored), abort)
        await self.confirm(key, stored)

    async def upload(
        self,
        path: Path,
        key: str,
        size: int,
        attributes: dict[str, str],
        abort: asyncio.Event | None = None,
    ) -> None:
        """`path` under `key`: whole or not at all (a multipart upload aborted once `abort`
        is set). Small files go up in one PUT, at once; large ones UPLOADS at a time (their
        buffers are the memory bound)."""
        try:
            if size <= UPLOAD_CHUNK:  # one PUT: atomic
                body = await asyncio.to_thread(path.read_bytes)
                await obstore.put_async(self.store, key, body, attributes=attributes,
                                        use_multipart=False)  # fmt: skip
                return
            async with self._uploads:
                await multipart(self.store, path, key, attributes, abort or asyncio.Event())
        except (asyncio.CancelledError, LocalError):
            raise
        except BaseException as exc:  # obstore's PanicException is a BaseException
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
            raise store_error(exc, self.key_url(key), "upload to") from exc

    async def confirm(self, key: str, stored: Stored) -> None:
        """What the store holds under `key` is `stored`: size and sha256 metadata (a HEAD)."""
        try:
            found = await obstore.get_async(self.store, key, options={"head": True})
        except Exception as exc:
            raise store_error(exc, self.key_url(key), "read back") from exc
        size, sha256 = found.meta["size"], found.attributes.get(META_SHA256)
        if size != stored.size or sha256 != stored.sha256:
            raise StoreError(
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

    def listing(self, folder: str, *, recursive: bool = False) -> Iterator[Any]:
        """The objects under `folder` (their `path` relative to the prefix, `size`, ...)."""
        prefix = folder.rstrip("/") or None
        try:
            if not recursive:
                yield from obstore.list_with_delimiter(self.store, prefix)["objects"]
                return
            for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
                yield from batch
        except Exception as exc:
            raise store_error(exc, self.key_url(folder), "list") from exc

    def present(self, relatives: Iterable[str], folder: str) -> set[str]:
        there = {item["path"] for item in self.listing(folder)}
        return {name for name in relatives if name in there}

    def remove(self, relative: str) -> None:
        try:
            obstore.delete(self.store, relative)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise store_error(exc, self.key_url(relative), "delete") from exc

    def names(self, folder: str) -> list[str]:
        return [item["path"].rsplit("/", 1)[-1] for item in self.listing(folder)]

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
        from archiver.snapshots import fetch, local_is_current

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
