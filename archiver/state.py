"""The durable per-call record (SQLite, WAL) and the lock that gives one run per archive.

The state, not the manifest, is the truth: an outcome is committed only after its file is
fsynced and renamed, so after a crash every call marked archived is on disk and complete.
De-duplication of the input goes through it too (a temporary table), so memory stays flat.

Durability: WAL with `synchronous=FULL`, so a commit is on disk (one fsync of the WAL) before
the call it records is counted; commits are grouped (`durable`: the outcomes of the same few
milliseconds share one). WAL is kept for good (a switch of journal mode opens a window where
a power cut leaves a journal a read-only open cannot roll back); `close` checkpoints with
TRUNCATE, leaving a small WAL. The state's own files are opened without following links.
One thread at a time uses the connection: the loop's, or the thread that writes the final
outputs once the workers are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from archiver.errors import DiskFull, LocalError
from archiver.names import STATE_DIR, STATE_FILE, state_folder
from archiver.schema import MIGRATIONS, SCHEMA_VERSION
from archiver.shard import Shard, from_label
from archiver.storage import ensure_folder, local_error, refuse_link

GROUP_WINDOW = 0.002  # how long a durable() waits to share its commit
_CLAIM_CHUNK = 900  # ids per IN (...) of a block claim: under any SQLite's variable limit
MANIFEST_CHANGE_KEY = "manifest_change"  # meta: the change number the manifest is written to


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


def _mapped(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """SQLite errors (disk full, I/O error, corruption found late) become LocalError, exit 4."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise state_error(exc, args[0].path) from exc  # type: ignore[attr-defined]

    return wrapper


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
    metadata_path: str | None = None
    transcript_path: str | None = None


class Seen(NamedTuple):
    """What a claim tells of a call seen before: enough to skip it when still archived."""

    status: str | None
    path: str | None
    bytes: int | None
    error_kind: str | None = None


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CLAIM_CHUNK):
        yield items[start : start + _CLAIM_CHUNK]


COLUMNS = (
    "call_id, status, path, bytes, sha256, content_type, archived_at, attempts, run_id, "
    "error_kind, error_message, metadata_path, transcript_path"
)


def states_in(out_dir: Path) -> list[Shard | None]:
    """Every state this folder holds: None for the whole-archive one, then each shard's."""
    found: list[Shard | None] = []
    if (out_dir / STATE_DIR / STATE_FILE).is_file():
        found.append(None)
    try:
        names = sorted(p.name for p in (out_dir / STATE_DIR).iterdir())
    except OSError:
        return found
    shards = []
    for name in names:
        shard = from_label(name)
        if shard and (out_dir / STATE_DIR / name / STATE_FILE).is_file():
            shards.append(shard)
    return found + sorted(shards, key=lambda s: (s[1], s[0]))


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


class State:
    """The SQLite state of one archive folder (or of one shard of it). Use as a context
    manager."""

    def __init__(
        self, out_dir: Path, *, readonly: bool = False, shard: Shard | None = None
    ) -> None:
        self.shard = shard
        self.folder = state_folder(out_dir, shard)
        self.path = self.folder / STATE_FILE
        self.readonly = readonly
        self._group: asyncio.Future[None] | None = None
        self._committing: set[asyncio.Task[None]] = set()  # grouped commits under way
        self._commit_lock = asyncio.Lock()
        self._taken_run: str | None = None  # whose ids temp.taken holds
        try:
            self._db = self._connect_readonly() if readonly else self._connect()
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, opening=True) from exc
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> Serial:
        ensure_folder(self.folder)
        refuse_link(self.folder)
        for companion in ("-wal", "-shm", "-journal"):
            refuse_link(self.path.with_name(self.path.name + companion))
        try:
            # Created owner-only before SQLite opens it (its -wal/-shm files copy this mode),
            # and never through a link planted at its name.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise local_error(exc, self.path) from exc
        return sqlite3.connect(
            self.path, isolation_level="DEFERRED", check_same_thread=False, factory=Serial
        )

    def _connect_readonly(self) -> Serial:
        if not self.path.is_file():
            raise LocalError(f"no osvi-archiver state here: {self.path} is missing")
        uri = f"file:{self.path}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=Serial)
            db.execute("PRAGMA user_version").fetchone()
        except sqlite3.OperationalError as exc:
            wal = self.path.with_name(self.path.name + "-wal")
            unfinished = wal.exists() and wal.stat().st_size > 0
            if (
                getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_READONLY_DIRECTORY
                or unfinished
            ):
                raise
            # A WAL state in a folder this user cannot write (a backup, a read-only mount):
            # no writer can be at work there, and no WAL holds anything, so it is read as is.
            db = sqlite3.connect(
                f"{uri}&immutable=1", uri=True, check_same_thread=False, factory=Serial
            )
        return db

    def _prepare(self) -> None:
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, opening=True) from exc

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LocalError(
                f"the archive state {self.path} has schema {version}, newer than this "
                f"osvi-archiver understands ({SCHEMA_VERSION}): upgrade osvi-archiver"
            )
        if self.readonly:
            if version < 1:
                raise LocalError(f"the archive state {self.path} is empty")
            return
        self._db.execute("PRAGMA journal_mode=WAL")  # for good: never switched back
        # FULL: a commit is fsynced (the WAL) before it returns, so a power cut loses no
        # outcome the run has counted; NORMAL would lose everything since the last checkpoint.
        self._db.execute("PRAGMA synchronous=FULL")
        for step in range(version, SCHEMA_VERSION):
            self._db.executescript(
                f"BEGIN; {MIGRATIONS[step]} PRAGMA user_version={step + 1}; COMMIT;"
            )
        # One aggregate a statement: SQLite answers each from its index (two in one would
        # scan the table, every run).
        seq = self._db.execute("SELECT max(seq) FROM calls").fetchone()[0]
        changed = self._db.execute("SELECT max(changed) FROM calls").fetchone()[0]
        self._next_seq = seq + 1 if seq is not None else 0
        self._next_change = max(changed or 0, int(self.get_meta(MANIFEST_CHANGE_KEY) or 0)) + 1

    def close(self) -> None:
        try:
            if not self.readonly:
                self._db.commit()
                # Fold the WAL into the database and leave it empty: a small, self-contained
                # file between runs, in the same journal mode.
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise state_error(exc, self.path) from exc
        finally:
            self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_mapped
    def get(self, call_id: str) -> CallRecord | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM calls WHERE call_id = ?", (call_id,))
        found = row.fetchone()
        return CallRecord(*found) if found else None

    def claim(self, call_id: str, run_id: str) -> tuple[CallRecord | None, bool]:
        """Mark `call_id` as taken by this run: (its previous record, whether it is a repeat)."""
        previous = self.get(call_id)
        return previous, self.claim_block([call_id], run_id)[0][1]

    @_mapped
    def claim_block(self, call_ids: list[str], run_id: str) -> list[tuple[Seen | None, bool]]:
        """Mark each of `call_ids` as taken by this run, in a few statements whatever their
        number (two reads per 900 ids, one executemany): for each, in order, what it was
        before (its status, file and error) and whether it is a repeat (taken by this run
        already, or earlier in the block). A new call gets the next `seq`: the order the
        manifest's parts follow. A rerun of a million archived ids makes these its hot path,
        so what the run took is kept in a temporary table (`temp.taken`, SQLite's temp file:
        no row of the archive is written, nothing fsynced, memory flat), not in the calls
        table.

        No write here spans several steps of SQLite (an `INSERT ... RETURNING` would): a
        grouped commit from a worker thread may come between any two, and a write still in
        progress makes it fail ("SQL statements in progress")."""
        self._taken_by(run_id)
        found: dict[str, tuple[Any, ...]] = {}
        taken: set[str] = set()
        for chunk in _chunks(call_ids):
            marks = ",".join("?" * len(chunk))
            query = (
                f"SELECT call_id, status, path, bytes, error_kind FROM calls "
                f"WHERE call_id IN ({marks})"
            )
            found.update((row[0], row) for row in self._db.execute(query, chunk))
            query = f"SELECT call_id FROM temp.taken WHERE call_id IN ({marks})"
            taken.update(row[0] for row in self._db.execute(query, chunk))
        answers: list[tuple[Seen | None, bool]] = []
        claimed: list[tuple[str]] = []
        fresh: list[tuple[str, int]] = []
        for call_id in call_ids:
            row = found.get(call_id)
            repeat = call_id in taken
            answers.append((Seen(*row[1:]) if row else None, repeat))
            if repeat:
                continue
            taken.add(call_id)
            claimed.append((call_id,))
            if row is None:
                fresh.append((call_id, self._next_seq))
                self._next_seq += 1
        self._db.executemany("INSERT INTO temp.taken (call_id) VALUES (?)", claimed)
        if fresh:
            self._db.executemany("INSERT INTO calls (call_id, seq) VALUES (?, ?)", fresh)
        return answers

    def _taken_by(self, run_id: str) -> None:
        """The temporary table of the ids `run_id` took; emptied when another run claims."""
        if self._taken_run == run_id:
            return
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS taken (call_id TEXT PRIMARY KEY) WITHOUT ROWID"
        )
        self._db.execute("DELETE FROM temp.taken")
        self._taken_run = run_id

    @_mapped
    def record(self, record: CallRecord) -> None:
        """Store a call's outcome; `await durable()` before counting it (a grouped commit,
        fsynced). A crash before that commit loses the outcome, never its file: the call is
        then downloaded again; never is an outcome recorded without its file."""
        self._db.execute(
            "UPDATE calls SET status=?, path=?, bytes=?, sha256=?, content_type=?, "
            "archived_at=?, attempts=?, run_id=?, error_kind=?, error_message=?, "
            "metadata_path=?, transcript_path=?, changed=? WHERE call_id=?",
            (
                record.status, record.path, record.bytes, record.sha256, record.content_type,
                record.archived_at, record.attempts, record.run_id, record.error_kind,
                record.error_message, record.metadata_path, record.transcript_path,
                self._next_change, record.call_id,
            ),
        )  # fmt: skip
        self._next_change += 1
        self._db.execute("DELETE FROM parts WHERE call_id = ?", (record.call_id,))

    @_mapped
    def store_parts(
        self, written: list[tuple[int, int, str, str]], emptied: set[int], upto: int | None
    ) -> None:
        """The manifest's catalog after a write: parts (part, calls, sha256, counts JSON)
        written, parts now empty, and the change number it is complete to (None: unchanged)."""
        self._db.executemany("INSERT OR REPLACE INTO manifest_parts VALUES (?, ?, ?, ?)", written)
        self._db.executemany("DELETE FROM manifest_parts WHERE part = ?", [(p,) for p in emptied])
        if upto is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (MANIFEST_CHANGE_KEY, str(upto)),
            )

    @_mapped
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    @_mapped
    def set_meta(self, key: str, value: str) -> None:
        """Committed at once (the sync watermark must survive a crash right after)."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        self.commit()

    def add_part(self, call_id: str, relative_path: str) -> None:
        """Note a `.part` about to be written; `await durable()` before creating it."""
        self._db.execute(
            "INSERT OR REPLACE INTO parts (call_id, path) VALUES (?, ?)", (call_id, relative_path)
        )

    async def durable(self) -> None:
        """Commit what was written so far, one commit shared by every caller of the moment:
        the workers that open a `.part` or finish a call within the same few milliseconds
        wait for one commit. It runs in a thread, one at a time: its fsync (synchronous=FULL)
        can take a while behind other writes, and the event loop must not wait for it."""
        if self._group is None:
            loop = asyncio.get_running_loop()
            self._group = loop.create_future()
            loop.call_later(GROUP_WINDOW, self._start_group)
        await asyncio.shield(self._group)

    async def settled(self) -> None:
        """Wait for the grouped commits under way (before the state is used off the loop or
        closed: a worker cancelled meanwhile leaves its commit running)."""
        if self._committing:
            await asyncio.wait(list(self._committing))

    def _start_group(self) -> None:
        group, self._group = self._group, None
        assert group is not None
        task = asyncio.get_running_loop().create_task(self._commit_group(group))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def _commit_group(self, group: asyncio.Future[None]) -> None:
        async with self._commit_lock:
            try:
                # The connection is shared with the loop's thread meanwhile: SQLite serialises
                # each call on it (sqlite3.threadsafety 3), and statements made meanwhile join
                # this commit or the next.
                await asyncio.to_thread(self.commit)
            except LocalError as exc:
                group.set_exception(exc)
            else:
                group.set_result(None)

    @_mapped
    def take_stale_parts(self) -> list[str]:
        """The `.part` files a previous run left in flight; forgotten once returned."""
        paths = [row[0] for row in self._db.execute("SELECT path FROM parts ORDER BY path")]
        self._db.execute("DELETE FROM parts")
        return paths

    @_mapped
    def find_path(self, relative_path: str) -> CallRecord | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM calls WHERE path = ? AND status = 'archived'",
            (relative_path,),
        ).fetchone()
        return CallRecord(*row) if row else None

    @_mapped
    def add_invalid_row(self, run_id: str, source: str, line: int, reason: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO invalid_rows VALUES (?, ?, ?, ?, ?)", (run_id, source, line, reason, value)
        )

    @_mapped
    def commit(self) -> None:
        """Commit what was written, from whichever thread (Serial: one statement or commit at
        a time)."""
        self._db.commit()

    def _rows(self, query: str, params: tuple[object, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Stream a query's rows, SQLite errors met on the way mapped like everywhere else."""
        try:
            yield from self._db.execute(query, params)
        except sqlite3.Error as exc:
            raise LocalError(f"cannot read the archive state {self.path}: {exc}") from exc

    def calls(self) -> Iterator[CallRecord]:
        """Every call with an outcome, sorted by call_id, streamed."""
        query = f"SELECT {COLUMNS} FROM calls WHERE status IS NOT NULL ORDER BY call_id"
        return (CallRecord(*row) for row in self._rows(query))

    def run_outcomes(self, run_id: str) -> Iterator[CallRecord]:
        query = (
            f"SELECT {COLUMNS} FROM calls WHERE run_id = ? AND status IS NOT NULL ORDER BY call_id"
        )
        return (CallRecord(*row) for row in self._rows(query, (run_id,)))

    def invalid_rows(self, run_id: str) -> Iterator[tuple[Any, ...]]:
        query = (
            "SELECT source, line, reason, value FROM invalid_rows WHERE run_id = ? ORDER BY rowid"
        )
        return self._rows(query, (run_id,))

    def ids_with_status(self, statuses: tuple[str, ...]) -> Iterator[str]:
        """The ids of the calls in these statuses, sorted; pending and failed ones through
        their own small index (every run takes them first), not a scan of every call."""
        marks = ",".join("?" * len(statuses))
        retried = set(statuses) <= {"pending", "failed"}
        narrow = "status IN ('pending', 'failed') AND " if retried else ""  # as calls_to_retry
        query = f"SELECT call_id FROM calls WHERE {narrow}status IN ({marks}) ORDER BY call_id"
        return (row[0] for row in self._rows(query, statuses))


@contextlib.contextmanager
def existing_state(out_dir: Path, shard: Shard | None) -> Iterator[State | None]:
    """The archive's state opened read-only, or None when there is none yet."""
    if not (state_folder(out_dir, shard) / STATE_FILE).is_file():
        yield None
        return
    with State(out_dir, readonly=True, shard=shard) as state:
        yield state
