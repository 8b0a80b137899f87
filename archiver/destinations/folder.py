"""An archive in a local folder: the state, the lock and the `.part` files are in it; a
publish is storage.PartFile.commit (fsync, rename, fsync the folder)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from archiver.archive.names import OWN_FOLDERS, STATE_DIR, states_in
from archiver.archive.storage import PartFile, refuse_link, write_atomic
from archiver.destinations.lock import ArchiveLock, held
from archiver.errors import LocalError
from archiver.state.database import existing_state

if TYPE_CHECKING:
    from archiver.archive.shard import Shard
    from archiver.state.call_records import Filed
    from archiver.state.database import State


from archiver.destinations import heap
from archiver.destinations.base import Destination, Holding, Stored


class LocalFolder(Destination):
    """`out_dir` is a folder: everything is in it, as the tool has always done.

    The tool's own files are named relative to the folder and never reached through a
    symbolic link below it (`runs/` linked elsewhere would have reports written, and files
    pruned, wherever it points): such a link is a LocalError naming it."""

    def __init__(self, folder: Path) -> None:
        self.root = folder
        self.where = str(folder)

    def is_new(self) -> bool:
        return not (self.root / STATE_DIR).exists()

    def prepare(self) -> None:
        """Also refuse, before anything is written, a `runs/` or `manifest/` that is a link;
        and set malloc for a folder's writes (heap.py)."""
        heap.for_folder()
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


def on_disk_in(out_dir: Path | str) -> Callable[[Filed], bool]:
    """`on_disk` for an archive folder: the file is there with the size recorded (a full
    re-hash is `verify`'s job). Plain os.stat: a rerun asks it of every id (pathlib costs
    7 µs)."""
    folder = str(out_dir)

    def on_disk(record: Filed) -> bool:
        if record.path is None:
            return False
        try:
            found = os.stat(f"{folder}/{record.path}")  # noqa: PTH116 (the hot path: see above)
        except OSError:
            return False
        return found.st_size == record.bytes

    return on_disk
