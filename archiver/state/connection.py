"""The state's SQLite connection, shared between threads safely (Serial), and what a SQLite
error means for the user (state_error, and `mapped` that turns any into a LocalError, exit 4)."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from archiver.archive.storage import local_error, refuse_link
from archiver.errors import DiskFull, LocalError

_P = ParamSpec("_P")
_R = TypeVar("_R")


def state_error(exc: sqlite3.Error, path: Path, *, opening: bool = False) -> LocalError:
    """What a SQLite error means for the user. `sqlite3.DatabaseError` covers a full disk as
    well as corruption: the error code tells them apart, and only a state that is really
    damaged gets the advice to move it aside (which means downloading everything again)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        return DiskFull(
            f"disk full while writing the archive state {path} (free some space, then rerun)"
        )
    if code == sqlite3.SQLITE_READONLY_ROLLBACK:
        return LocalError(
            f"the archive state {path} holds a write a crash interrupted, which only a "
            "writing open can finish: run `osvi-archiver run` or `sync` on this archive once "
            "(it recovers it; nothing is lost), then try again"
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or (
        opening and primary is None and isinstance(exc, sqlite3.DatabaseError)
    ):
        return LocalError(
            f"the archive state {path} is unreadable ({exc}); it was left untouched. "
            "Move it aside to rebuild from scratch (every call is then downloaded again)."
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN):
        return LocalError(
            f"cannot open the archive state {path}: {exc} (check the permissions of "
            f"{path.parent} and the files in it)"
        )
    return LocalError(f"cannot use the archive state {path}: {exc}")


def mapped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """SQLite errors (disk full, I/O error, corruption found late) become LocalError, exit 4.
    For the methods of an object with a `path` (the state's file)."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise state_error(exc, args[0].path) from exc  # type: ignore[attr-defined]

    return wrapper


class Serial(sqlite3.Connection):
    """The state's connection, shared by the loop's thread and worker threads (the grouped
    commits, the manifest's bookkeeping): each statement and each commit holds one lock, so
    that Python's implicit BEGIN before a write and the write itself are never split by
    another thread's BEGIN or COMMIT (which failed, now and then, with "cannot start a
    transaction within a transaction" or "no transaction is active": exit 4 in runs long
    enough for the manifest to be written while they went). SQLite serialises each call on a
    connection anyway (sqlite3.threadsafety 3): the lock adds no wait of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = threading.RLock()

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with self.guard:
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        with self.guard:
            return super().executemany(sql, parameters)

    def commit(self) -> None:
        with self.guard:
            if self.in_transaction:
                super().commit()


def open_writable(path: Path) -> Serial:
    """The state's file, created owner-only before SQLite opens it (its -wal/-shm files copy
    this mode), and never through a link planted at its name or its companions'."""
    refuse_link(path.parent)
    for companion in ("-wal", "-shm", "-journal"):
        refuse_link(path.with_name(path.name + companion))
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        raise local_error(exc, path) from exc
    return sqlite3.connect(
        path, isolation_level="DEFERRED", check_same_thread=False, factory=Serial
    )


def open_readonly(path: Path) -> Serial:
    """The state read-only (verify, dry runs, status): no write, no lock."""
    uri = f"file:{path}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=Serial)
        db.execute("PRAGMA user_version").fetchone()
    except sqlite3.OperationalError as exc:
        wal = path.with_name(path.name + "-wal")
        unfinished = wal.exists() and wal.stat().st_size > 0
        if (
            getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_READONLY_DIRECTORY
            or unfinished
        ):
            raise
        # A WAL state in a folder this user cannot write (a backup, a read-only mount): no
        # writer can be at work there, and no WAL holds anything, so it is read as is.
        db = sqlite3.connect(
            f"{uri}&immutable=1", uri=True, check_same_thread=False, factory=Serial
        )
    return db


def backup(path: Path, target: Path) -> None:
    """A consistent copy of the state at `path` in `target` (SQLite's backup API, through a
    connection of its own: the run's goes on meanwhile), self-contained (no WAL beside it)."""
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise state_error(exc, target) from exc


def read_meta(path: Path, key: str) -> str | None:
    """One value of a state's meta table, read-only; None when the file holds no state."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def read_metas(path: Path, prefix: str) -> dict[str, str]:
    """Every meta key of a state starting with `prefix`, read-only; none when unreadable."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        rows = db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?",
            (prefix, prefix + "\U0010ffff"),
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {str(key): str(value) for key, value in rows}


def foreign(path: Path) -> str | None:
    """Why the file at `path` is not an osvi-archiver state (an empty file, an empty
    database, another application's tables), or None: it is one (or cannot be read: the
    open says what is wrong then)."""
    try:
        if path.stat().st_size == 0:
            return "an empty file"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except (OSError, sqlite3.Error):
        return None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]  # fmt: skip
    except sqlite3.Error:
        return None
    finally:
        db.close()
    if version >= 1 and {"calls", "meta"} <= set(tables):
        return None
    if not tables:
        return "an empty database"
    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    return f"a database of another application (tables {shown})"


def intact(path: Path) -> bool:
    """Whether `path` is a whole SQLite database (a snapshot just downloaded, say)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return bool(db.execute("PRAGMA quick_check").fetchone()[0] == "ok")
        finally:
            db.close()
    except sqlite3.Error:
        return False
