"""The durable per-call record (SQLite, WAL) and the lock that gives one run per archive.

The state, not the manifest, is the truth: an outcome is committed only after its file is
fsynced and renamed, so after a crash every call marked archived is on disk and complete.
De-duplication of the input goes through it too (a temporary table), so memory stays flat.

Durability: WAL with `synchronous=FULL`, so a commit is on disk (one fsync of the WAL) before
the call it records is counted; commits are grouped (`durable`: the outcomes of the same few
milliseconds share one). WAL is kept for good (a switch of journal mode opens a window where
a power cut leaves a journal a read-only open cannot roll back); `close` checkpoints with
TRUNCATE, leaving a small WAL. The state's own files are opened without following links.
The loop's thread and worker threads (grouped commits, the manifest's bookkeeping) share
the connection; sqlite.Serial makes each statement and commit whole.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from archiver.archive.names import STATE_FILE, state_folder
from archiver.archive.shard import Shard
from archiver.archive.storage import ensure_folder, fsync_folder, local_error
from archiver.errors import LocalError
from archiver.state.call_records import CallRecord, Found, Seen, columns_of
from archiver.state.connection import (
    Serial,
    foreign,
    mapped,
    open_readonly,
    open_writable,
    state_error,
)
from archiver.state.group_commits import GroupCommit
from archiver.state.meta import MANIFEST_CHANGE_KEY
from archiver.state.schema import migrate

_CLAIM_CHUNK = 900  # ids per IN (...) of a block claim: under any SQLite's variable limit


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CLAIM_CHUNK):
        yield items[start : start + _CLAIM_CHUNK]


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
        self._commits = GroupCommit(self.commit)
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
        if not self.path.exists():
            create(self.path)
        refuse_foreign(self.path)
        return open_writable(self.path)

    def _connect_readonly(self) -> Serial:
        if not self.path.is_file():
            raise LocalError(f"no osvi-archiver state here: {self.path} is missing")
        refuse_foreign(self.path)
        return open_readonly(self.path)

    def _prepare(self) -> None:
        try:
            self._migrate()
        except sqlite3.Error as exc:
            raise state_error(exc, self.path, opening=True) from exc

    def _migrate(self) -> None:
        migrate(self._db, self.path, readonly=self.readonly)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
        # A state of schema 4 opened read-only (status, verify, check before the first run of
        # this version migrates it) has no call times: read as unknown.
        self.keeps_call_times = "started_at" in columns
        self._columns = columns_of(columns)
        if self.readonly:
            return
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

    @mapped
    def get(self, call_id: str) -> CallRecord | None:
        row = self._db.execute(f"SELECT {self._columns} FROM calls WHERE call_id = ?", (call_id,))
        found = row.fetchone()
        return CallRecord(*found) if found else None

    def claim(self, call_id: str, run_id: str) -> tuple[CallRecord | None, bool]:
        """Mark `call_id` as taken by this run: (its previous record, whether it is a repeat)."""
        previous = self.get(call_id)
        return previous, self.claim_block([call_id], run_id)[0][1]

    @mapped
    def claim_block(self, call_ids: list[str], run_id: str) -> list[tuple[Seen | None, bool]]:
        """Mark each of `call_ids` as taken by this run (two reads per 900 ids, one
        executemany): for each, in order, what it was before and whether it is a repeat
        (taken by this run already, or earlier in the block). A new call gets the next `seq`,
        the manifest parts' order. What the run took is kept in a temporary table
        (`temp.taken`: no row of the archive rewritten, nothing fsynced, memory flat). No
        write here spans several steps (an `INSERT ... RETURNING` would): a commit from a
        worker thread between two steps would fail ("SQL statements in progress")."""
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

    @mapped
    def start_listing(self) -> None:
        """An empty `temp.listed`: the ids a sync lists, for its window's check at the end
        (`listed_outcomes`). A temporary table: nothing fsynced, memory flat."""
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS listed (call_id TEXT PRIMARY KEY) WITHOUT ROWID"
        )
        self._db.execute("DELETE FROM temp.listed")

    @mapped
    def note_listed(self, call_ids: list[str]) -> None:
        """Ids the listing gave (after `start_listing`); a repeat is kept once."""
        self._db.executemany(
            "INSERT OR IGNORE INTO temp.listed (call_id) VALUES (?)", [(i,) for i in call_ids]
        )

    @mapped
    def listed_outcomes(self) -> dict[str | None, int]:
        """How many of the listed ids hold each outcome, as committed (None: none yet)."""
        query = (
            "SELECT c.status, count(*) FROM temp.listed AS l "
            "LEFT JOIN calls AS c ON c.call_id = l.call_id GROUP BY 1"
        )
        return {status: int(count) for status, count in self._db.execute(query)}

    @mapped
    def record(self, record: CallRecord) -> None:
        """Store a call's outcome; `await durable()` before counting it (a grouped commit,
        fsynced). A crash before that commit loses the outcome, never its file: the call is
        then downloaded again; never is an outcome recorded without its file."""
        self._db.execute(
            "UPDATE calls SET status=?, path=?, bytes=?, sha256=?, content_type=?, "
            "archived_at=?, attempts=?, run_id=?, error_kind=?, error_message=?, "
            "metadata_path=?, transcript_path=?, changed=?, "
            "started_at=coalesce(?, started_at), md5_checked=? WHERE call_id=?",
            (
                record.status, record.path, record.bytes, record.sha256, record.content_type,
                record.archived_at, record.attempts, record.run_id, record.error_kind,
                record.error_message, record.metadata_path, record.transcript_path,
                self._next_change, record.started_at, record.md5_checked, record.call_id,
            ),
        )  # fmt: skip
        self._next_change += 1
        self._db.execute("DELETE FROM parts WHERE call_id = ?", (record.call_id,))

    @mapped
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

    @mapped
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    @mapped
    def metas(self, prefix: str) -> dict[str, str]:
        """Every meta key that starts with `prefix`, with its value."""
        rows = self._db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\U0010ffff"),
        )
        return {str(key): str(value) for key, value in rows}

    @mapped
    def delete_meta(self, key: str) -> None:
        self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        self.commit()

    @mapped
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
        """Commit what was written so far, one commit shared by every caller of the moment
        (commits.GroupCommit): on disk, fsynced, before a call is counted."""
        await self._commits.durable()

    async def settled(self) -> None:
        """Wait for the grouped commits under way (before the state is used off the loop or
        closed: a worker cancelled meanwhile leaves its commit running)."""
        await self._commits.settled()

    @mapped
    def take_stale_parts(self) -> list[str]:
        """The `.part` files a previous run left in flight; forgotten once returned."""
        paths = [row[0] for row in self._db.execute("SELECT path FROM parts ORDER BY path")]
        self._db.execute("DELETE FROM parts")
        return paths

    @mapped
    def find_path(self, relative_path: str) -> CallRecord | None:
        row = self._db.execute(
            f"SELECT {self._columns} FROM calls WHERE path = ? AND status = 'archived'",
            (relative_path,),
        ).fetchone()
        return CallRecord(*row) if row else None

    @mapped
    def outcomes(self, call_ids: list[str]) -> dict[str, Found]:
        """What the state holds of each of these calls (`check`), those it knows."""
        started = "started_at" if self.keeps_call_times else "NULL"
        found: dict[str, Found] = {}
        for chunk in _chunks(call_ids):
            query = (
                f"SELECT call_id, status, error_kind, error_message, path, {started} FROM calls "
                f"WHERE call_id IN ({','.join('?' * len(chunk))})"
            )
            found.update((row[0], Found(*row)) for row in self._db.execute(query, chunk))
        return found

    @mapped
    def archived_between(self, low: float, high: float) -> list[Found]:
        """The archived calls whose time (epoch s) lies in [low, high]: their own index."""
        if not self.keeps_call_times:
            return []
        query = (
            "SELECT call_id, status, error_kind, error_message, path, started_at FROM calls "
            "WHERE started_at IS NOT NULL AND started_at BETWEEN ? AND ? AND status = 'archived'"
        )
        return [Found(*row) for row in self._db.execute(query, (low, high))]

    def diverging(self, other: Path) -> Iterator[CallRecord]:
        """The outcomes `other` (another copy of this archive's state: a merge) holds that
        this state lacks: calls it does not know or has no outcome for, and calls `other`
        holds archived where this one does not (or with other bytes). Streamed."""
        self.commit()
        self._db.execute("ATTACH DATABASE ? AS theirs", (str(other),))  # only read
        try:
            known = {row[1] for row in self._db.execute("PRAGMA theirs.table_info(calls)")}
            columns = ", ".join(
                f"t.{name}" if name != "NULL" else name for name in columns_of(known).split(", ")
            )
            query = (
                f"SELECT {columns} FROM theirs.calls AS t LEFT JOIN main.calls AS m "
                "ON m.call_id = t.call_id WHERE t.status IS NOT NULL AND (m.status IS NULL OR "
                "(t.status = 'archived' AND (m.status != 'archived' OR m.sha256 IS NOT t.sha256)))"
            )
            yield from (CallRecord(*row) for row in self._rows(query))
        finally:
            self._db.execute("DETACH DATABASE theirs")

    @mapped
    def adopt(self, records: list[CallRecord]) -> None:
        """Outcomes of another copy of this state (a merge), recorded over this one's; a call
        new here gets the next `seq` (the manifest's parts)."""
        fresh = [(r.call_id, self._next_seq + n) for n, r in enumerate(records)]
        self._db.executemany("INSERT OR IGNORE INTO calls (call_id, seq) VALUES (?, ?)", fresh)
        self._next_seq += len(fresh)
        for record in records:
            self.record(record)
        self.commit()

    @mapped
    def add_invalid_row(self, run_id: str, source: str, line: int, reason: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO invalid_rows VALUES (?, ?, ?, ?, ?)", (run_id, source, line, reason, value)
        )

    @mapped
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
        query = f"SELECT {self._columns} FROM calls WHERE status IS NOT NULL ORDER BY call_id"
        return (CallRecord(*row) for row in self._rows(query))

    def run_outcomes(self, run_id: str) -> Iterator[CallRecord]:
        query = (
            f"SELECT {self._columns} FROM calls WHERE run_id = ? AND status IS NOT NULL "
            "ORDER BY call_id"
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


def create(path: Path) -> None:
    """A new state, whole or absent: made under a temporary name, its schema in, then
    renamed into place (a crash of a first run left an empty file that later runs took for
    a new state; now a state file without our schema is never one of ours)."""
    temp = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
    try:
        db = open_writable(temp)
        try:
            migrate(db, temp, readonly=False)
        finally:
            db.close()
        temp.replace(path)
        fsync_folder(path.parent)
    except sqlite3.Error as exc:
        raise state_error(exc, path, opening=True) from exc
    except OSError as exc:
        raise local_error(exc, path) from exc
    finally:
        for leftover in (
            temp,
            temp.with_name(temp.name + "-wal"),
            temp.with_name(temp.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)


def refuse_foreign(path: Path) -> None:
    """Exit 4 before an open of a state file that is not ours: taken for a new, empty state,
    it would have every call downloaded again and the manifest rewritten with a run's calls
    alone."""
    why = foreign(path)
    if why is not None:
        raise LocalError(
            f"the archive state {path} is {why}, not an osvi-archiver state; it was left "
            "untouched. To start afresh on purpose, move it aside: the next run starts a new "
            "state and downloads every call again (an archive in a bucket rebuilds its state "
            "from its objects instead)."
        )


@contextlib.contextmanager
def existing_state(out_dir: Path, shard: Shard | None) -> Iterator[State | None]:
    """The archive's state opened read-only, or None when there is none yet."""
    if not (state_folder(out_dir, shard) / STATE_FILE).is_file():
        yield None
        return
    with State(out_dir, readonly=True, shard=shard) as state:
        yield state
