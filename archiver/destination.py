"""The one seam between the run and where its archive lives (§7, §12).

Everything a run puts into the archive goes through a `Destination`: the recordings and their
sidecars (`publish`), the manifest's parts and index and the run reports (`write`), what is
read back (`read`, `present`, `names`), the lock, and, for a store, the state's snapshot. Two
kinds:

- `LocalFolder`: `out_dir` is a folder. The state, the lock and the `.part` files are in it,
  as they always were; a publish is storage.PartFile.commit (fsync, rename, fsync the folder).
- `objectstore.StoreDestination`: `out_dir` is `s3://`, `gs://` or `az://`. The state and the
  `.part` files (a bounded local spool: at most `concurrency` downloads) are on local disk in
  `state_dir`; a publish uploads the verified `.part` and checks what the store holds.

`root` is the local folder either way: the state lives at `state_folder(root, shard)`, and the
`.part` files a run registers are relative to it.
"""

from __future__ import annotations

import logging
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from archiver.decide import on_disk_in
from archiver.errors import ArchiveLocked, LocalError
from archiver.lock import ArchiveLock, held
from archiver.names import OWN_FOLDERS, states_in
from archiver.state import existing_state
from archiver.storage import PartFile, ensure_folder, refuse_link, write_atomic

if TYPE_CHECKING:
    from archiver.decide import Filed
    from archiver.settings import Settings
    from archiver.shard import Shard
    from archiver.state import State


log = logging.getLogger("archiver.run")
SNAPSHOT_INTERVAL = 300.0  # a store's snapshot of the state, during a run (snapshots.py)


@dataclass(frozen=True)
class Stored:
    """What is known of a file being published: what the store's metadata says of it."""

    call_id: str
    sha256: str
    size: int
    content_type: str | None = None
    kind: str = "recording"  # recording, metadata or transcript


class Holding(Protocol):
    """The lock of one archive (or shard): taken before the state is opened, `kept` (a lease
    renewed) while the run goes."""

    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def kept(self) -> AbstractAsyncContextManager[None]: ...
    def lost(self) -> ArchiveLocked | None: ...
    def on_lost(self, callback: Callable[[], None]) -> None: ...


class Destination(ABC):
    where: str  # what users are shown: the folder, or the store's URL
    root: Path  # the local folder of the state and the `.part` files
    # Whether a publish in flight is abandoned (an upload aborted) when its call is cancelled,
    # rather than carried to its end (a rename, which takes no time).
    aborts_on_cancel = False
    # Whether a run without a state builds it from what the archive holds (a store's listing).
    rebuilds = False

    def prepare(self) -> None:
        """Before the lock: create what must exist, fail early on what cannot be used."""
        ensure_folder(self.root)

    @abstractmethod
    def holding(self, shard: Shard | None) -> Holding: ...

    async def bring_state(self, shard: Shard | None) -> None:
        """Under the lock, before the state opens: make the local state the latest one."""
        return

    def save_state(self, state: State) -> None:
        """Keep a copy of the state where the archive is (a store's snapshot)."""
        return

    @abstractmethod
    async def publish(self, part: PartFile, relative: str, stored: Stored) -> None:
        """Put the verified `.part` under its final name; raise if it cannot be confirmed."""

    @abstractmethod
    def write(
        self, relative: str, chunks: Iterable[bytes], file_mode: int, temp_dir: str | None = None
    ) -> None:
        """A whole file (manifest part or index, run report), atomically: the old or the new."""

    @abstractmethod
    def read(self, relative: str, limit: int | None = None) -> bytes | None:
        """A file's bytes (its first `limit`), or None when there is none."""

    @abstractmethod
    def present(self, relatives: Iterable[str], folder: str) -> set[str]:
        """Which of these files (all in `folder`) exist."""

    @abstractmethod
    def remove(self, relative: str) -> None: ...

    def shown(self, relative: str) -> Path | str:
        """Where a file of the archive is, as the summary shows it."""
        return f"{self.where}/{relative}"

    @abstractmethod
    def names(self, folder: str) -> list[str]:
        """The names of the files directly in `folder` (none when it is missing)."""

    @abstractmethod
    def on_disk(self) -> Callable[[Filed], bool]:
        """Whether an archived call's file is still there, as a rerun asks of each one."""

    @abstractmethod
    def states(self) -> list[Shard | None]:
        """The states this archive holds: None for the whole archive's, then each shard's."""

    @abstractmethod
    def viewing(self, shard: Shard | None) -> AbstractContextManager[State | None]:
        """The state opened read-only for a look (dry run, verify, sync's first check), no
        lock taken; None when there is none yet."""

    def run_holds(self, shard: Shard | None) -> bool | None:
        """Whether a run holds this archive (or shard) now, found without taking its lock;
        None when that cannot be known."""
        return None


class LocalFolder(Destination):
    """`out_dir` is a folder: everything is in it, as the tool has always done.

    The tool's own files are named relative to the folder and never reached through a
    symbolic link below it (`runs/` linked elsewhere would have reports written, and files
    pruned, wherever it points): such a link is a LocalError naming it."""

    def __init__(self, folder: Path) -> None:
        self.root = folder
        self.where = str(folder)

    def prepare(self) -> None:
        """Also refuse, before anything is written, a `runs/` or `manifest/` that is a link."""
        super().prepare()
        for folder in OWN_FOLDERS:
            refuse_link(self.root / folder)

    def holding(self, shard: Shard | None) -> Holding:
        return ArchiveLock(self.root, shard)

    async def publish(self, part: PartFile, relative: str, stored: Stored) -> None:
        await part.commit(self.root / relative)

    def write(
        self, relative: str, chunks: Iterable[bytes], file_mode: int, temp_dir: str | None = None
    ) -> None:
        temps = self._inside(temp_dir, folder=True) if temp_dir is not None else None
        write_atomic(self._inside(relative), chunks, file_mode, temp_dir=temps)

    def read(self, relative: str, limit: int | None = None) -> bytes | None:
        path = self._inside(relative)
        try:
            # O_NOFOLLOW: a link at the file's own name is not the tool's file either; nor is
            # anything but a regular file (a folder, a FIFO, /dev/zero).
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read(-1 if limit is None else limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def present(self, relatives: Iterable[str], folder: str) -> set[str]:
        return {name for name in relatives if (self.root / name).is_file()}

    def remove(self, relative: str) -> None:
        self._inside(relative).unlink(missing_ok=True)

    def shown(self, relative: str) -> Path | str:
        return self.root / relative

    def names(self, folder: str) -> list[str]:
        path = self._inside(folder, folder=True)
        try:
            with os.scandir(path) as entries:
                return [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        except OSError:
            return []

    def _inside(self, relative: str, *, folder: bool = False) -> Path:
        """`root / relative` for a name of the tool's own (a file, or a `folder`): relative,
        no `..`, and no folder of it below the root a symbolic link (LocalError naming it)."""
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts:
            raise LocalError(f"{relative!r} is not a name inside the archive {self.root}")
        path = self.root
        for part in pure.parts if folder else pure.parts[:-1]:
            path = path / part
            refuse_link(path)
        return self.root / pure

    def on_disk(self) -> Callable[[Filed], bool]:
        return on_disk_in(self.root)

    def states(self) -> list[Shard | None]:
        return states_in(self.root)

    def viewing(self, shard: Shard | None) -> AbstractContextManager[State | None]:
        return existing_state(self.root, shard)

    def run_holds(self, shard: Shard | None) -> bool | None:
        return held(self.root, shard)


def open_destination(settings: Settings) -> Destination:
    """The destination `out_dir` names. A store's client is built here (its library is
    imported only then), from the store settings and the standard credential chains."""
    if settings.in_store:
        from archiver.objectstore import StoreDestination

        return StoreDestination.from_settings(settings)
    given = [name for name in STORE_ONLY if getattr(settings, name)]
    if given:
        log.warning("%s set but out_dir is a folder (%s): ignored", ", ".join(given),
                    settings.folder, extra={"event": "store_settings_ignored"})  # fmt: skip
    return LocalFolder(settings.folder)


# The settings that mean something for a bucket only.
STORE_ONLY = ("store_endpoint", "store_region", "store_sse", "store_sse_kms_key_id",
              "store_storage_class")  # fmt: skip
