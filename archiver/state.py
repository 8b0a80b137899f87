"""The durable per-call record (SQLite, WAL) and the lock that gives one run per archive.

The state, not the manifest, is the truth: an outcome is committed only after its file is
fsynced and renamed, so after a crash every call marked archived is on disk and complete.
De-duplication of the input goes through it too (`seen_run`), so memory stays flat.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from archiver.errors import ArchiveLocked, LocalError
from archiver.storage import FOLDER_MODE, ensure_folder, local_error

SCHEMA_VERSION = 1
STATE_DIR = ".osvi-archiver"
FINAL_STATUSES = ("archived", "pending", "not_available", "failed")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    status TEXT,              -- NULL while first in flight; else one of FINAL_STATUSES
    path TEXT, bytes INTEGER, sha256 TEXT, content_type TEXT, archived_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    error_kind TEXT, error_message TEXT,
    seen_run TEXT             -- the last run that took this id from its input
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_run ON calls (run_id);
CREATE TABLE IF NOT EXISTS invalid_rows (
    run_id TEXT NOT NULL, source TEXT NOT NULL, line INTEGER NOT NULL,
    reason TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invalid_by_run ON invalid_rows (run_id);
"""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the state: the latest outcome of a call, as the manifest shows it."""

    call_id: str
    status: str | None
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    archived_at: str | None = None
    attempts: int = 0
    run_id: str | None = None
    error_kind: str | None = None
    error_message: str | None = None


_COLUMNS = (
    "call_id, status, path, bytes, sha256, content_type, archived_at, attempts, run_id, "
    "error_kind, error_message"
)


class State:
    """The SQLite state of one archive folder. Use as a context manager."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / STATE_DIR
        ensure_folder(self.folder)
        self.path = self.folder / "state.sqlite3"
        try:
            # Created owner-only before SQLite opens it; its -wal/-shm files copy this mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise local_error(exc, self.path) from exc
        self._db = sqlite3.connect(self.path, isolation_level="DEFERRED")
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise LocalError(
                f"the archive state {self.path} is unreadable ({exc}); it was left untouched. "
                "Move it aside to rebuild from scratch (every call is then downloaded again)."
            ) from exc

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LocalError(
                f"the archive state {self.path} has schema {version}, newer than this "
                f"osvi-archiver understands ({SCHEMA_VERSION}): upgrade osvi-archiver"
            )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; a power cut may lose the last commits,
        # whose calls are then downloaded again (never marked archived without their file).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, call_id: str) -> CallRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM calls WHERE call_id = ?", (call_id,))
        found = row.fetchone()
        return CallRecord(*found) if found else None

    def claim(self, call_id: str, run_id: str) -> tuple[CallRecord | None, bool]:
        """Mark `call_id` as taken by this run: (its previous record, whether it is a repeat)."""
        previous = self._db.execute(
            f"SELECT {_COLUMNS}, seen_run FROM calls WHERE call_id = ?", (call_id,)
        ).fetchone()
        if previous is not None and previous[-1] == run_id:
            return CallRecord(*previous[:-1]), True
        self._db.execute(
            "INSERT INTO calls (call_id, seen_run) VALUES (?, ?) "
            "ON CONFLICT (call_id) DO UPDATE SET seen_run = excluded.seen_run",
            (call_id, run_id),
        )
        return (CallRecord(*previous[:-1]) if previous else None), False

    def record(self, record: CallRecord) -> None:
        """Store a call's outcome durably (committed before returning)."""
        self._db.execute(
            "UPDATE calls SET status=?, path=?, bytes=?, sha256=?, content_type=?, "
            "archived_at=?, attempts=?, run_id=?, error_kind=?, error_message=? WHERE call_id=?",
            (
                record.status, record.path, record.bytes, record.sha256, record.content_type,
                record.archived_at, record.attempts, record.run_id, record.error_kind,
                record.error_message, record.call_id,
            ),
        )  # fmt: skip
        self.commit()

    def add_invalid_row(self, run_id: str, source: str, line: int, reason: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO invalid_rows VALUES (?, ?, ?, ?, ?)", (run_id, source, line, reason, value)
        )

    def commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.OperationalError as exc:
            raise LocalError(f"cannot write the archive state {self.path}: {exc}") from exc

    def calls(self) -> Iterator[CallRecord]:
        """Every call with an outcome, sorted by call_id, streamed."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM calls WHERE status IS NOT NULL ORDER BY call_id"
        )
        for row in rows:
            yield CallRecord(*row)

    def run_outcomes(self, run_id: str) -> Iterator[CallRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM calls WHERE run_id = ? AND status IS NOT NULL "
            "ORDER BY call_id",
            (run_id,),
        )
        for row in rows:
            yield CallRecord(*row)

    def invalid_rows(self, run_id: str) -> Iterator[tuple[str, int, str, str]]:
        yield from self._db.execute(
            "SELECT source, line, reason, value FROM invalid_rows WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )

    def ids_with_status(self, statuses: tuple[str, ...]) -> Iterator[str]:
        marks = ",".join("?" * len(statuses))
        query = f"SELECT call_id FROM calls WHERE status IN ({marks}) ORDER BY call_id"
        for (call_id,) in self._db.execute(query, statuses):
            yield call_id


class ArchiveLock:
    """An exclusive `flock` on the archive. The kernel drops it when its process dies,
    so a lock left by kill -9 or a power cut never blocks the next run."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / STATE_DIR / "lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        ensure_folder(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FOLDER_MODE & 0o600)
        except OSError as exc:
            raise local_error(exc, self.path) from exc
        handle = os.fdopen(fd, "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "{}"
            handle.close()
            raise ArchiveLocked(_locked_message(self.path, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": utc_now()}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
            self._handle = None


def _locked_message(path: Path, holder_text: str) -> str:
    try:
        holder = json.loads(holder_text)
    except json.JSONDecodeError:
        holder = {}
    who = f"pid {holder.get('pid', '?')}, started {holder.get('started_at', '?')}"
    return f"another osvi-archiver run holds this archive ({who}; lock {path}); try again later"
