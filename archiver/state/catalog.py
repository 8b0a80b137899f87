"""The manifest's view of the state: a read snapshot on a connection of its own, and the
catalog of the manifest's parts as last written (§7, issue 12).

WAL lets a second connection read a consistent snapshot while the run goes on writing on its
own: the manifest is written from such a snapshot, in a thread, never on the event loop. A
call's part is `seq // PART_CALLS` (`seq`: the order it was first recorded in); a part is
written again when one of its calls has `changed` past the change number the manifest was last
written to (`manifest_change` in the state's meta).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from archiver.errors import LocalError
from archiver.state.call_records import COLUMNS, CallRecord
from archiver.state.connection import state_error
from archiver.state.database import State
from archiver.state.meta import MANIFEST_CHANGE_KEY

PART_CALLS = 10_000  # calls per manifest part, at most (~3.5 MB of JSON)


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One part of the manifest as written: how many calls, their sha256, counts per status."""

    part: int
    calls: int
    sha256: str
    counts: dict[str, int]


class Snapshot:
    """A consistent read of the state as committed when it was opened."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _one(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        row = self._db.execute(query, params).fetchone()
        return row[0] if row else None

    def upto(self) -> int:
        """The change number everything in this snapshot is at."""
        return int(self._one("SELECT max(changed) FROM calls") or 0)

    def written_upto(self) -> int:
        value = self._one("SELECT value FROM meta WHERE key = ?", (MANIFEST_CHANGE_KEY,))
        return int(value or 0)

    def parts(self) -> dict[int, PartInfo]:
        rows = self._db.execute("SELECT part, calls, sha256, counts FROM manifest_parts")
        return {p: PartInfo(p, n, sha, json.loads(counts)) for p, n, sha, counts in rows}

    def changed_parts(self, since: int) -> set[int]:
        """The parts holding a call whose outcome changed after change number `since`."""
        query = "SELECT DISTINCT seq / ? FROM calls WHERE changed > ? AND seq IS NOT NULL"
        return {row[0] for row in self._db.execute(query, (PART_CALLS, since))}

    def every_part(self) -> set[int]:
        query = "SELECT DISTINCT seq / ? FROM calls WHERE status IS NOT NULL"
        return {row[0] for row in self._db.execute(query, (PART_CALLS,))}

    def part(self, part: int) -> Iterator[CallRecord]:
        """The calls of one part with an outcome, in the order they were first recorded."""
        query = (
            f"SELECT {COLUMNS} FROM calls WHERE seq >= ? AND seq < ? AND status IS NOT NULL "
            "ORDER BY seq"
        )
        first = part * PART_CALLS
        return (CallRecord(*row) for row in self._db.execute(query, (first, first + PART_CALLS)))


@contextlib.contextmanager
def snapshot(state: State) -> Iterator[Snapshot]:
    """A read snapshot of `state` on a connection of its own, usable in any one thread."""
    try:
        db = sqlite3.connect(f"file:{state.path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise state_error(exc, state.path) from exc
    try:
        db.execute("BEGIN")
        db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # the snapshot starts here
        yield Snapshot(db)
    except sqlite3.Error as exc:
        raise state_error(exc, state.path) from exc
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.rollback()
        db.close()


def store(state: State, written: list[PartInfo], emptied: set[int], upto: int | None) -> None:
    """Record in the state what the manifest now holds (on the state's own connection);
    `upto`: the change number it is now complete to (None: not complete, the mark stays)."""
    try:
        state.store_parts(
            [(p.part, p.calls, p.sha256, json.dumps(p.counts)) for p in written], emptied, upto
        )
    except sqlite3.Error as exc:
        raise LocalError(f"cannot record the manifest's parts in {state.path}: {exc}") from exc
