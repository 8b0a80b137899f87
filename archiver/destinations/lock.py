"""One run per archive (per shard, §6): an exclusive `flock` the kernel drops when its process
dies, so a lock left by kill -9 or a power cut never blocks the next run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from archiver.archive.names import LOCK_FILE, state_folder
from archiver.archive.shard import Shard
from archiver.archive.storage import FOLDER_MODE, ensure_folder, local_error, refuse_link
from archiver.errors import ArchiveLocked
from archiver.state.call_records import utc_now


class ArchiveLock:
    """An exclusive `flock` on the archive. The kernel drops it when its process dies,
    so a lock left by kill -9 or a power cut never blocks the next run."""

    def __init__(self, out_dir: Path, shard: Shard | None = None) -> None:
        self.path = state_folder(out_dir, shard) / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        ensure_folder(self.path.parent)
        refuse_link(self.path.parent)
        try:
            # Never through a link planted at its name (O_NOFOLLOW: ELOOP, a local error).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FOLDER_MODE & 0o600)
        except OSError as exc:
            raise local_error(exc, self.path) from exc
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "{}"
            handle.close()
            raise ArchiveLocked(_locked_message(self.path, holder)) from None
        try:  # who holds it, for the message a second run shows
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "started_at": utc_now()}))
            handle.flush()
        except OSError as exc:  # a full disk, say
            with contextlib.suppress(OSError):  # its flush at close fails the same way
                handle.close()
            raise local_error(exc, self.path) from exc
        self._handle = handle

    def kept(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Nothing to renew: a `flock` lasts as long as its process."""
        return contextlib.nullcontext()

    def lost(self) -> ArchiveLocked | None:
        """A `flock` is never lost while its process lives."""
        return None

    def on_lost(self, callback: Callable[[], None]) -> None:
        return

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
            self._handle = None


PROC_LOCKS = Path("/proc/locks")


def held(out_dir: Path, shard: Shard | None = None, table: Path = PROC_LOCKS) -> bool | None:
    """Whether a run holds this archive's (or shard's) lock now, found without taking it:
    even a shared `flock` for an instant would make a run starting then exit 75. The kernel's
    table of locks says it (Linux's /proc/locks); None when it cannot be read. A run in
    another PID namespace (another container on the same volume) is not in this table."""
    path = state_folder(out_dir, shard) / LOCK_FILE
    try:
        inode = path.lstat().st_ino
    except FileNotFoundError:
        return False  # no run ever took it
    except OSError:
        return None
    try:
        text = table.read_text("ascii", "replace")
    except OSError:
        return None
    return inode in {_flock_inode(line) for line in text.splitlines()}


def _flock_inode(line: str) -> int | None:
    """The inode of a held exclusive `flock` in a line of /proc/locks, such as
    `1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146790 0 EOF` (a waiter's has `->` after the
    id). The inode alone is compared: the device is numbered differently in some containers
    and file systems, and an inode number of another file system's locked file only makes
    the tool say a run holds the lock."""
    fields = line.split()
    if len(fields) < 6 or fields[1:2] != ["FLOCK"] or fields[3] != "WRITE":
        return None
    number = fields[5].rpartition(":")[2]
    return int(number) if number.isdigit() else None


def _locked_message(path: Path, holder_text: str) -> str:
    try:
        holder = json.loads(holder_text)
    except json.JSONDecodeError:
        holder = {}
    who = f"pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')}"
    return f"another osvi-archiver run holds this archive ({who}; lock {path}); try again later"
