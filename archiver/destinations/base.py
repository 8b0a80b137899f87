"""The one seam between the run and where its archive lives (§7, §12): the `Destination`
interface every kind implements.

Everything a run puts into the archive goes through a `Destination`: the recordings and their
sidecars (`publish`), the manifest's parts and index and the run reports (`write`), what is
read back (`read`, `present`, `names`), the lock, and, for a store, the state's snapshot. Two
kinds (`open_destination` in this package picks one from the settings):

- `folder.LocalFolder`: `out_dir` is a folder. The state, the lock and the `.part` files are
  in it, as they always were; a publish is storage.PartFile.commit (fsync, rename, fsync the
  folder).
- `store.bucket.StoreDestination`: `out_dir` is `s3://`, `gs://` or `az://`. The state and the
  `.part` files (a bounded local spool: at most `concurrency` downloads) are on local disk in
  `state_dir`; a publish uploads the verified `.part` and checks what the store holds.

`root` is the local folder either way: the state lives at `state_folder(root, shard)`, and the
`.part` files a run registers are relative to it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from archiver.archive.storage import PartFile, ensure_folder
from archiver.errors import ArchiveLocked

if TYPE_CHECKING:
    from archiver.archive.shard import Shard
    from archiver.state.call_records import Filed
    from archiver.state.database import State


log = logging.getLogger("archiver.engine.lifecycle")
# A store's snapshot of the state, during a run (destinations/store/snapshots.py).
SNAPSHOT_INTERVAL = 300.0


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

    def is_new(self) -> bool:
        """Whether no archive is there yet (a run would create it): the run then has the API
        accept its token before it creates anything (a mistyped token leaves no empty
        archive behind). A bucket is someone's already, and its state lives elsewhere: no."""
        return False

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
