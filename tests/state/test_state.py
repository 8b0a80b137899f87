from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from archiver.archive.names import STATE_DIR, state_folder, states_in
from archiver.destinations.lock import ArchiveLock
from archiver.errors import ArchiveLocked, DiskFull, LocalError
from archiver.state.call_records import CallRecord, Seen
from archiver.state.connection import state_error
from archiver.state.database import State

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
D = "44444444-4444-4444-8444-444444444444"
SHA = "ab" * 32


def archived(call_id: str, run_id: str = "run-1") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        status="archived",
        path=f"{call_id}.mp4",
        bytes=1234,
        sha256=SHA,
        content_type="audio/mp4",
        archived_at="2026-11-05T10:00:00.000000Z",
        attempts=2,
        run_id=run_id,
    )


def failed(call_id: str, run_id: str = "run-1") -> CallRecord:
    return CallRecord(
        call_id=call_id,
        status="failed",
        attempts=6,
        run_id=run_id,
        error_kind="server_error",
        error_message="API answered 500: boom",
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with State(tmp_path) as opened:
        yield opened


def state_file(out_dir: Path) -> Path:
    return out_dir / STATE_DIR / "state.sqlite3"


# claim


def test_first_claim_has_no_previous_record_and_is_not_a_repeat(state: State) -> None:
    assert state.claim(A, "run-1") == (None, False)


def test_second_claim_in_the_same_run_is_a_repeat(state: State) -> None:
    state.claim(A, "run-1")
    previous, repeat = state.claim(A, "run-1")
    assert repeat is True
    assert previous == CallRecord(call_id=A, status=None)


def test_claim_in_a_later_run_is_not_a_repeat_and_returns_the_last_outcome(state: State) -> None:
    state.claim(A, "run-1")
    state.record(archived(A, "run-1"))
    previous, repeat = state.claim(A, "run-2")
    assert repeat is False
    assert previous == archived(A, "run-1")
    assert state.claim(A, "run-2")[1] is True


def test_claim_keeps_each_call_apart(state: State) -> None:
    state.claim(A, "run-1")
    assert state.claim(B, "run-1") == (None, False)


# record / get


def test_get_of_an_unknown_call_is_none(state: State) -> None:
    assert state.get(A) is None


def test_record_then_get_round_trips(state: State) -> None:
    state.claim(A, "run-1")
    state.claim(B, "run-1")
    state.record(archived(A))
    state.record(failed(B))
    assert state.get(A) == archived(A)
    assert state.get(B) == failed(B)


def test_record_is_durable_across_reopening(tmp_path: Path) -> None:
    with State(tmp_path) as first:
        first.claim(A, "run-1")
        first.record(archived(A))
    with State(tmp_path) as second:
        assert second.get(A) == archived(A)


def _visible(tmp_path: Path, call_id: str) -> object:
    other = sqlite3.connect(state_file(tmp_path))
    try:
        return other.execute("SELECT status FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    finally:
        other.close()


def test_the_state_runs_in_wal_mode_with_every_commit_fsynced(state: State) -> None:
    """synchronous=FULL: a commit is on disk before it returns (NORMAL would lose, in a power
    cut, every outcome since the last checkpoint, even the tables of a new state)."""
    assert state._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert state._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_journal_mode_stays_wal_between_runs(tmp_path: Path) -> None:
    """Never switched back and forth: a cut during a switch would leave a hot journal that a
    read-only open (verify) cannot roll back. The header says WAL (bytes 18 and 19 are 2)."""
    with State(tmp_path) as opened:
        opened.claim(A, "run-1")
        opened.record(archived(A))
    header = state_file(tmp_path).read_bytes()[:20]
    assert header[18:20] == b"\x02\x02"
    wal = state_file(tmp_path).with_name("state.sqlite3-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed (TRUNCATE) at close


async def test_an_outcome_is_committed_by_durable_before_anyone_counts_it(
    state: State, tmp_path: Path
) -> None:
    state.claim(A, "run-1")
    state.record(failed(A))
    assert _visible(tmp_path, A) is None  # recorded, not yet committed
    await state.durable()
    assert _visible(tmp_path, A) == ("failed",)


async def test_durable_commits_once_for_everyone_waiting(state: State, tmp_path: Path) -> None:
    import asyncio

    for call_id in (A, B):
        state.claim(call_id, "run-1")
        state.add_part(call_id, f"{call_id}.mp4.part")
    await asyncio.gather(state.durable(), state.durable())
    other = sqlite3.connect(state_file(tmp_path))
    try:
        assert other.execute("SELECT count(*) FROM parts").fetchone() == (2,)
    finally:
        other.close()


def test_a_later_record_replaces_the_earlier_outcome(state: State) -> None:
    state.claim(A, "run-1")
    state.record(failed(A, "run-1"))
    state.claim(A, "run-2")
    state.record(archived(A, "run-2"))
    assert state.get(A) == archived(A, "run-2")


# calls / run_outcomes / ids_with_status / invalid_rows


def test_calls_are_sorted_by_call_id_and_skip_calls_still_in_flight(state: State) -> None:
    for call_id in (D, B, A, C):
        state.claim(call_id, "run-1")
    state.record(failed(D))
    state.record(archived(B))
    state.record(archived(A))
    assert [r.call_id for r in state.calls()] == [A, B, D]
    assert list(state.calls())[2] == failed(D)


def test_calls_of_an_empty_state_are_empty(state: State) -> None:
    assert list(state.calls()) == []


def test_run_outcomes_are_only_the_calls_that_run_decided(state: State) -> None:
    for call_id in (C, A, B, D):
        state.claim(call_id, "run-1")
    state.record(archived(C, "run-1"))
    state.record(archived(A, "run-0"))
    state.record(failed(B, "run-1"))
    assert [r.call_id for r in state.run_outcomes("run-1")] == [B, C]
    assert list(state.run_outcomes("run-0")) == [archived(A, "run-0")]
    assert list(state.run_outcomes("run-9")) == []


def test_ids_with_status_selects_and_sorts(state: State) -> None:
    for call_id in (D, C, B, A):
        state.claim(call_id, "run-1")
    state.record(failed(D))
    state.record(archived(C))
    state.record(CallRecord(call_id=B, status="pending", run_id="run-1", error_kind="pending"))
    assert list(state.ids_with_status(("failed", "pending"))) == [B, D]
    assert list(state.ids_with_status(("archived",))) == [C]
    assert list(state.ids_with_status(("not_available",))) == []


def test_invalid_rows_come_back_per_run_in_input_order(state: State) -> None:
    state.add_invalid_row("run-1", "calls.csv", 7, "not a UUID", "abc")
    state.add_invalid_row("run-2", "other.txt", 1, "not a UUID", "zzz")
    state.add_invalid_row("run-1", "calls.csv", 3, "empty id", "")
    state.commit()
    assert list(state.invalid_rows("run-1")) == [
        ("calls.csv", 7, "not a UUID", "abc"),
        ("calls.csv", 3, "empty id", ""),
    ]
    assert list(state.invalid_rows("run-2")) == [("other.txt", 1, "not a UUID", "zzz")]
    assert list(state.invalid_rows("run-3")) == []


# the file


def test_state_file_is_owner_only(tmp_path: Path) -> None:
    with State(tmp_path) as opened:
        opened.claim(A, "run-1")
        opened.record(archived(A))
        assert stat.S_IMODE(state_file(tmp_path).stat().st_mode) == 0o600
        wal = state_file(tmp_path).with_name("state.sqlite3-wal")
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / STATE_DIR).stat().st_mode) == 0o700


def test_state_from_a_newer_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    with State(tmp_path) as opened:
        opened.claim(A, "run-1")
        opened.record(archived(A))
    raw = sqlite3.connect(state_file(tmp_path))
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    before = state_file(tmp_path).read_bytes()

    with pytest.raises(LocalError) as caught:
        State(tmp_path)

    message = str(caught.value)
    assert "99" in message
    assert "newer" in message
    assert "upgrade" in message
    assert str(state_file(tmp_path)) in message
    assert caught.value.exit_code == 4
    assert state_file(tmp_path).read_bytes() == before


def test_corrupt_state_is_refused_and_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    garbage = random.Random(20261105).randbytes(8192)
    state_file(tmp_path).write_bytes(garbage)

    with pytest.raises(LocalError) as caught:
        State(tmp_path)

    message = str(caught.value)
    assert "unreadable" in message
    assert str(state_file(tmp_path)) in message
    assert state_file(tmp_path).read_bytes() == garbage


# ArchiveLock


def test_second_lock_on_the_same_archive_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first, second = ArchiveLock(tmp_path), ArchiveLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(ArchiveLocked) as caught:
            second.acquire()
    finally:
        first.release()
    assert f"pid {os.getpid()}" in str(caught.value)
    assert str(first.path) in str(caught.value)
    assert caught.value.exit_code == 75


def test_lock_can_be_taken_again_after_release(tmp_path: Path) -> None:
    first, second = ArchiveLock(tmp_path), ArchiveLock(tmp_path)
    first.acquire()
    first.release()
    second.acquire()
    try:
        holder = json.loads(second.path.read_text())
        assert holder["pid"] == os.getpid()
    finally:
        second.release()


def test_lock_file_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    lock = ArchiveLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.path.write_text(json.dumps({"pid": 4_194_303, "started_at": "2026-01-01T00:00:00Z"}))
    lock.acquire()
    try:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_locked_message_survives_unreadable_holder_text(tmp_path: Path) -> None:
    first, second = ArchiveLock(tmp_path), ArchiveLock(tmp_path)
    first.acquire()
    try:
        first.path.write_text("not json")
        with pytest.raises(ArchiveLocked, match=r"pid \?"):
            second.acquire()
    finally:
        first.release()


def test_release_without_acquire_is_harmless(tmp_path: Path) -> None:
    lock = ArchiveLock(tmp_path)
    lock.release()
    lock.acquire()
    lock.release()
    lock.release()


def test_a_schema_1_state_is_migrated_forward_keeping_its_calls(tmp_path: Path) -> None:
    from archiver.state.schema import MIGRATIONS, SCHEMA_VERSION

    folder = tmp_path / ".osvi-archiver"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.sqlite3")
    db.executescript(MIGRATIONS[0])
    db.execute(
        "INSERT INTO calls (call_id, status, path, bytes, sha256, attempts) "
        "VALUES ('3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f', 'archived', 'a.mp4', 3, 'x', 1)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with State(tmp_path) as state:
        record = state.get("3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f")
        assert record is not None
        assert record.status == "archived"
        state.add_part("3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f", "a.mp4.part")  # v2's table
        assert state.find_path("a.mp4") == record
    db = sqlite3.connect(folder / "state.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    # schema 4: the calls numbered for the manifest's parts, each marked changed (written once)
    assert db.execute("SELECT seq, changed FROM calls").fetchall() == [(0, 1)]
    db.close()


def _old_state(out_dir: Path, schema: int = 4) -> None:
    """A state as osvi-archiver wrote it at `schema` (4: before call times; 5: before
    md5_checked), with one archived call."""
    from archiver.state.schema import MIGRATIONS

    folder = out_dir / ".osvi-archiver"
    folder.mkdir()
    db = sqlite3.connect(folder / "state.sqlite3")
    for step in MIGRATIONS[:schema]:
        db.executescript(step)
    db.execute(
        "INSERT INTO calls (call_id, status, path, bytes, sha256, attempts, seq, changed) "
        f"VALUES ('{A}', 'archived', 'a.mp4', 3, 'x', 1, 0, 1)"
    )
    db.execute(f"PRAGMA user_version = {schema}")
    db.commit()
    db.close()


def test_a_old_state_read_only_has_no_call_times_and_still_reads(tmp_path: Path) -> None:
    """status, verify and check read a state the new version has not migrated yet."""
    _old_state(tmp_path)
    with State(tmp_path, readonly=True) as state:
        assert not state.keeps_call_times
        record = state.get(A)
        assert record is not None
        assert record.started_at is None
        assert [r.call_id for r in state.calls()] == [A]
        assert state.outcomes([A, B])[A].status == "archived"
        assert state.archived_between(0, 2e9) == []
    with State(tmp_path) as state:  # the first writing open migrates it
        assert state.keeps_call_times


def test_call_times_are_kept_and_found_by_window(state: State) -> None:
    from dataclasses import replace

    state.claim_block([A, B, C], "run-1")
    state.record(replace(archived(A), started_at=1000.0))
    state.record(replace(archived(B), started_at=5000.0))
    state.record(replace(failed(C), started_at=1500.0))
    state.record(archived(A, "run-2"))  # a later outcome that does not know the time keeps it
    assert state.get(A).started_at == 1000.0  # type: ignore[union-attr]
    assert [f.call_id for f in state.archived_between(900, 2000)] == [A]
    found = state.outcomes([A, C, D])
    assert set(found) == {A, C}
    assert (found[C].status, found[C].error_kind) == ("failed", "server_error")
    plan = state._db.execute(
        "EXPLAIN QUERY PLAN SELECT call_id FROM calls WHERE started_at IS NOT NULL "
        "AND started_at BETWEEN ? AND ? AND status = 'archived'",
        (0, 1),
    ).fetchall()
    assert "calls_by_start" in " ".join(row[3] for row in plan)


def test_claiming_a_block_reads_and_writes_once_for_any_number_of_ids(state: State) -> None:
    ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(2000)]
    state.claim(ids[5], "run-0")
    state.record(archived(ids[5]))
    statements: list[str] = []
    state._db.set_trace_callback(statements.append)
    claims = state.claim_block([*ids, ids[7]], "run-1")
    state._db.set_trace_callback(None)
    assert claims[5] == (Seen("archived", f"{ids[5]}.mp4", 1234), False)
    assert claims[6] == (None, False)
    assert claims[-1] == (None, True)  # named twice in the block: the second is a repeat
    [(_, repeat)] = state.claim_block([ids[0]], "run-1")
    assert repeat  # taken by this run already
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 6  # the block in chunks of 900 ids: two reads each, not one per id
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert not any("UPDATE" in s.upper() for s in writes)  # no row of the archive rewritten
    assert sum("temp.taken" in s for s in writes) == len(ids)  # one executemany: a row each


def test_what_a_run_took_is_forgotten_by_the_next_run(state: State) -> None:
    assert state.claim_block([A, B], "run-1") == [(None, False), (None, False)]
    assert state.claim_block([A], "run-1") == [(Seen(None, None, None), True)]  # in flight
    state.record(archived(A))
    assert state.claim_block([A, A], "run-2") == [
        (Seen("archived", f"{A}.mp4", 1234), False),
        (Seen("archived", f"{A}.mp4", 1234), True),
    ]


def test_new_calls_are_numbered_in_the_order_first_recorded(state: State) -> None:
    state.claim_block([B, A], "run-1")
    state.claim_block([A, C], "run-2")
    rows = dict(state._db.execute("SELECT call_id, seq FROM calls").fetchall())
    assert rows == {B: 0, A: 1, C: 2}


# shards sharing one archive folder


def test_each_shard_has_its_own_state_and_states_in_lists_them(tmp_path: Path) -> None:
    assert states_in(tmp_path) == []
    for shard in ((1, 3), None, (0, 3), (10, 12)):
        with State(tmp_path, shard=shard) as state:
            state.claim(str(shard), "run")
            state.record(CallRecord(str(shard), "failed", run_id="run"))
    assert states_in(tmp_path) == [None, (0, 3), (1, 3), (10, 12)]
    assert state_folder(tmp_path, (0, 3)) == tmp_path / STATE_DIR / "shard-0-of-3"
    with State(tmp_path, readonly=True, shard=(0, 3)) as state:
        assert [r.call_id for r in state.calls()] == ["(0, 3)"]
    (tmp_path / STATE_DIR / "shard-4-of-5").mkdir()  # no state in it: not listed
    (tmp_path / STATE_DIR / "shard-x-of-5").mkdir()
    assert len(states_in(tmp_path)) == 4


def test_shards_lock_independently_but_one_shard_only_once(tmp_path: Path) -> None:
    whole, zero, one = (
        ArchiveLock(tmp_path),
        ArchiveLock(tmp_path, (0, 2)),
        ArchiveLock(tmp_path, (1, 2)),
    )
    for lock in (whole, zero, one):
        lock.acquire()
    try:
        with pytest.raises(ArchiveLocked, match="shard-1-of-2"):
            ArchiveLock(tmp_path, (1, 2)).acquire()
    finally:
        for lock in (whole, zero, one):
            lock.release()


# what a SQLite error means for the user


def sqlite_error(code: int, text: str = "boom") -> sqlite3.Error:
    error = sqlite3.OperationalError(text)
    error.sqlite_errorcode = code
    return error


def test_a_full_disk_is_disk_full_never_a_corrupt_state(tmp_path: Path) -> None:
    error = state_error(sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), tmp_path)
    assert isinstance(error, DiskFull)
    assert "disk full" in str(error)
    assert "Move it aside" not in str(error)


def test_an_interrupted_write_is_recoverable_and_said_so(tmp_path: Path) -> None:
    """A hot journal that a read-only open cannot roll back: the state is fine."""
    error = state_error(sqlite_error(sqlite3.SQLITE_READONLY_ROLLBACK), tmp_path, opening=True)
    assert "recovers it" in str(error)
    assert "Move it aside" not in str(error)


@pytest.mark.parametrize("code", [sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB])
def test_only_a_damaged_state_gets_the_advice_to_move_it_aside(tmp_path: Path, code: int) -> None:
    assert "Move it aside" in str(state_error(sqlite_error(code), tmp_path, opening=True))


@pytest.mark.parametrize(
    "code", [sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM]
)
def test_a_state_that_cannot_be_opened_says_to_check_permissions(tmp_path: Path, code: int) -> None:
    message = str(state_error(sqlite_error(code), tmp_path / "state.sqlite3", opening=True))
    assert "permissions" in message
    assert "Move it aside" not in message


def planted_link(tmp_path: Path, name: str) -> Path:
    """A symbolic link at the state folder's `name`, to a file outside the archive."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    folder = tmp_path / "archive" / STATE_DIR
    folder.mkdir(parents=True, mode=0o700)
    (folder / name).symlink_to(outside)
    return outside


@pytest.mark.parametrize("name", ["state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"])
def test_the_state_is_never_used_through_a_link(tmp_path: Path, name: str) -> None:
    outside = planted_link(tmp_path, name)
    with pytest.raises(LocalError, match="symbolic link"):
        State(tmp_path / "archive")
    assert outside.read_bytes() == b"precious"


def test_the_lock_is_never_taken_through_a_link(tmp_path: Path) -> None:
    outside = planted_link(tmp_path, "lock")
    with pytest.raises(LocalError, match="symbolic link"):
        ArchiveLock(tmp_path / "archive").acquire()
    assert outside.read_bytes() == b"precious"


def test_a_block_claim_never_holds_a_write_open_across_a_commit_from_another_thread(
    state: State,
) -> None:
    """The grouped commits run in a worker thread while the loop's thread claims blocks: no
    statement of a claim may be a write still in progress between two of its steps (an
    `INSERT ... RETURNING` is), or such a commit fails with "SQL statements in progress"."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def commit_all_the_time() -> None:
        while not stop.wait(0.001):  # a commit every millisecond, each an fsync
            try:
                state.commit()
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    committer = threading.Thread(target=commit_all_the_time)
    committer.start()
    try:
        for block in range(8):
            ids = [f"{block:08x}-{n:04x}-4000-8000-000000000000" for n in range(2000)]
            state.claim_block(ids, "run-1")
    finally:
        stop.set()
        committer.join()
    assert errors == []


def test_writes_and_commits_from_three_threads_never_split_a_transaction(state: State) -> None:
    """The loop's thread writes, a worker thread commits the grouped outcomes, another
    records what the manifest wrote and commits: Python's implicit BEGIN and the write after
    it must never be split by another thread's BEGIN or COMMIT ("cannot start a transaction
    within a transaction", exit 4 in a run long enough to write its manifest meanwhile)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def repeat(work: Callable[[int], object]) -> None:
        n = 0
        while not stop.is_set():
            try:
                work(n)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            n += 1

    def manifest_bookkeeping(n: int) -> None:
        state.store_parts([], set(), n)
        state.commit()

    threads = [
        threading.Thread(target=repeat, args=(manifest_bookkeeping,)),
        threading.Thread(target=repeat, args=(lambda n: state.commit(),)),
    ]
    for thread in threads:
        thread.start()
    try:
        for n in range(3000):
            state.add_part(f"{n:08x}-0000-4000-8000-000000000000", f"{n}.part")
            if errors:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda path: path.write_bytes(b""), "an empty file"),
        (lambda path: sqlite3.connect(path).executescript(
            "CREATE TABLE songs (id INTEGER); CREATE TABLE users (name TEXT);"),
         "another application (tables songs, users)"),
        (lambda path: sqlite3.connect(path).execute("PRAGMA user_version = 0").fetchone(),
         "an empty"),
    ],
)  # fmt: skip
def test_a_state_file_that_is_not_ours_is_refused_and_left_untouched(
    tmp_path: Path, make: Callable[[Path], object], why: str
) -> None:
    """Issue 21: a 0-byte or foreign state was taken for a new, empty one: every call was
    downloaded again and the manifest rewritten with one run's calls."""
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    make(path)
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(LocalError, match=re.escape(why)) as caught:
            State(tmp_path, readonly=readonly)
        assert caught.value.exit_code == 4
        assert "move it aside" in str(caught.value)
    assert path.read_bytes() == before


def test_a_new_state_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Made under a temporary name and renamed: a first run killed while creating it leaves
    no empty file behind for the next run to refuse."""
    import archiver.state.database as state_module

    def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(state_module, "migrate", broken)
    with pytest.raises(LocalError):
        State(tmp_path)
    assert list((tmp_path / STATE_DIR).iterdir()) == []
    monkeypatch.undo()
    with State(tmp_path) as state:
        state.claim(A, "run-1")
    assert state_file(tmp_path).stat().st_size > 0


def test_a_schema_5_state_read_only_reads_md5_checked_as_unknown(tmp_path: Path) -> None:
    """A call recorded before issue 23 (schema 5) has no md5_checked: null, not false."""
    _old_state(tmp_path, schema=5)
    with State(tmp_path, readonly=True) as state:
        record = state.get(A)
        assert record is not None
        assert record.md5_checked is None
    with State(tmp_path) as state:  # migrated: still unknown
        assert state.get(A).md5_checked is None  # type: ignore[union-attr]
