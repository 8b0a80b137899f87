"""Files on disk: `.part` files, atomic writes, fsync, permissions.

A final name only ever holds a complete, verified file: bytes go to `<final>.part`, which is
flushed, fsynced and renamed, and the folder is fsynced so the rename survives a power cut.
OSErrors become LocalError (exit 4) here, with the path and what was needed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from archiver.archive.names import temp_affixes, temp_glob
from archiver.errors import DiskFull, LocalError

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where a coroutine needs it (it is loaded by then): `status`, `--help` and
# `completion` read this module and start without it (start-up, issue 23).

# New files of the tool's own: never through a symbolic link, never an existing file.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER_MODE = 0o700  # recordings are personal data: folders are owner-only
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def local_error(exc: OSError, path: Path, needed: int | None = None) -> LocalError:
    """Translate an OSError met while writing `path` into the error a user can act on."""
    if exc.errno in _DISK_FULL:
        need = f"; about {needed:,} more bytes were needed" if needed else ""
        return DiskFull(f"disk full while writing {path}{need} (free some space, then rerun)")
    if exc.errno in _NOT_WRITABLE:
        return LocalError(f"cannot write {path}: {exc.strerror} (check the folder's permissions)")
    if exc.errno == errno.ELOOP:
        return LocalError(
            f"{path} is a symbolic link; the archive's own files are never written through "
            "one (remove it, then rerun)"
        )
    return LocalError(f"cannot write {path}: {exc.strerror or exc}")


def ensure_folder(folder: Path) -> None:
    """Create `folder` and each missing parent owner-only (`mkdir(parents=True)` would give
    the parents the umask's mode), fsyncing the parent of each one created so that the new
    entry survives a power cut; folders that already exist are left as they are."""
    if folder.is_dir():
        return
    missing = [folder, *(p for p in folder.parents if not p.exists())]
    try:
        for path in reversed(missing):
            path.mkdir(mode=FOLDER_MODE, exist_ok=True)
            path.chmod(FOLDER_MODE)  # mkdir's mode is masked by the umask
            fsync_folder(path.parent)
    except OSError as exc:
        raise local_error(exc, folder) from exc


def refuse_link(path: Path) -> None:
    """LocalError when `path` is a symbolic link: the tool's own files (state, lock) are never
    used through one, which could point anywhere."""
    if path.is_symlink():
        raise LocalError(
            f"{path} is a symbolic link; the archive's own files are never used through one "
            "(remove it, then rerun)"
        )


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartFile:
    """An open `.part` file receiving one download, written in large buffers.

    Each write is one hop to a worker thread that writes the buffer and also runs the caller's
    `also` on it (the running hashes): hashing then overlaps the network instead of holding
    the event loop, and there is one hop per MiB rather than two.
    """

    def __init__(self, path: Path, handle: BinaryIO, size: int) -> None:  # from open()
        self.path = path
        self.size = size  # bytes written so far
        self._handle = handle

    @classmethod
    async def create(cls, path: Path, file_mode: int) -> PartFile:
        """A new, empty `.part`, with exactly `file_mode` whatever the umask. Whatever was
        at `path` before (a stale `.part`, or a symbolic link planted there) is removed first,
        never written through: the file is created with O_EXCL | O_NOFOLLOW."""

        def open_file() -> BinaryIO:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a link itself, never what it points to
            fd = os.open(path, CREATE_FLAGS, file_mode)
            try:
                os.fchmod(fd, file_mode)  # ours: created just now, not a stranger's file
                # Buffered: BufferedWriter.write writes all or raises, where a raw write may
                # write part of the buffer (a full disk) and say so only in its return value.
                return os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise

        import asyncio

        opening = asyncio.ensure_future(asyncio.to_thread(open_file))
        try:
            handle = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread opens the file all the same: close it once it has (the run removes
            # the `.part`, registered before), or its descriptor leaks.
            opening.add_done_callback(_close_opened)
            raise
        except OSError as exc:
            raise local_error(exc, path) from exc
        return cls(path, handle, 0)

    def write_now(self, data: bytes) -> None:
        """Write `data` from the calling thread (a lane of transfer/hash_lanes.py): all of it
        or an OSError; `size` counts it once written."""
        self._handle.write(data)
        self.size += len(data)

    def write_error(self, exc: OSError, expected_total: int | None) -> LocalError:
        """A write's OSError as the run reports it (a full disk with what was still needed)."""
        needed = expected_total - self.size if expected_total else 0
        return local_error(exc, self.path, needed or None)

    async def write(
        self,
        data: bytes,
        expected_total: int | None,
        also: Callable[[bytes], None] | None = None,
    ) -> None:
        def work() -> None:
            self._handle.write(data)
            if also is not None:
                also(data)

        try:
            import asyncio

            await asyncio.to_thread(work)
        except OSError as exc:
            needed = expected_total - self.size if expected_total else len(data)
            raise local_error(exc, self.path, needed) from exc
        self.size += len(data)

    async def close(self) -> None:
        import asyncio

        await asyncio.to_thread(self._handle.close)

    async def commit(self, final: Path) -> None:
        """fsync, close, rename to `final`, fsync the folder: only then is the file archived."""

        def work() -> None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            on_disk = os.fstat(self._handle.fileno()).st_size
            self._handle.close()
            if on_disk != self.size:  # defence in depth: never rename a short file into place
                raise OSError(errno.EIO, f"{on_disk} bytes on disk, {self.size} written")
            self.path.replace(final)
            fsync_folder(final.parent)

        try:
            import asyncio

            await asyncio.to_thread(work)
        except OSError as exc:
            raise local_error(exc, final) from exc

    async def seal(self) -> None:
        """Flush and close, checking every byte written is in the file: a `.part` whose bytes
        go on elsewhere (uploaded to a store) needs no fsync, only to be whole."""

        def work() -> None:
            self._handle.flush()
            on_disk = os.fstat(self._handle.fileno()).st_size
            self._handle.close()
            if on_disk != self.size:
                raise OSError(errno.EIO, f"{on_disk} bytes on disk, {self.size} written")

        try:
            import asyncio

            await asyncio.to_thread(work)
        except OSError as exc:
            raise local_error(exc, self.path) from exc


def _close_opened(opening: asyncio.Future[BinaryIO]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def remove_quietly(path: Path) -> None:
    """Delete a `.part` that will not be resumed; a missing file is fine."""
    import asyncio

    with contextlib.suppress(FileNotFoundError):
        await asyncio.to_thread(os.remove, path)


def remove_stale_temps(
    folder: Path, name_glob: str, *, unless: str | None = None, older_than: float | None = None
) -> int:
    """Remove the temp files `write_atomic` left behind for files named like `name_glob` (a
    crash or power cut between its mkstemp and its rename leaves `.<name>.<random>.tmp`), but
    those whose name holds `unless`; with `older_than` (seconds), only those untouched that
    long (a folder others write to too). How many were removed; a folder that cannot be
    listed removes nothing."""
    removed = 0
    now = time.time()
    try:
        found = list(folder.glob(temp_glob(name_glob)))
    except OSError:
        return 0
    for temp in found:
        if unless is not None and unless in temp.name:
            continue
        try:
            if older_than is not None and now - temp.lstat().st_mtime < older_than:
                continue
            temp.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def write_atomic(
    path: Path, chunks: Iterable[bytes], file_mode: int, *, temp_dir: Path | None = None
) -> None:
    """Write a file (manifest, report, sidecar) so readers only ever see the old or the new
    one, whole. `chunks` is streamed: a manifest of millions of calls never sits in memory.
    The temp file is made in `temp_dir` (same file system) where given: a folder small enough
    to be searched for stale temps on every run, unlike an archive's root."""
    ensure_folder(path.parent)
    folder = temp_dir or path.parent
    if temp_dir is not None:
        ensure_folder(temp_dir)
    written = 0
    try:
        prefix, suffix = temp_affixes(path.name)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
        try:
            os.fchmod(fd, file_mode)
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    written += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).replace(path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)
    except OSError as exc:
        raise local_error(exc, path, written or None) from exc
