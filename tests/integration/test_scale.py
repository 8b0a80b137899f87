"""At scale (issue 12): the input settled in blocks, the manifest as an index and parts that a
run rewrites only where it changed, the migration from schema 1, the export command, and a
SIGTERM answered during a large manifest write."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from archiver.destinations.folder import LocalFolder
from archiver.engine import input_feed as feed
from archiver.engine import lifecycle as run_module
from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import CallId, InputItem, InvalidRow, read_ids
from archiver.engine.lifecycle import execute
from archiver.fake import FakeConfig, Fault, FaultKind
from archiver.manifest.writer import load_schema
from archiver.monitoring.counts import NoProgress
from archiver.state import catalog
from archiver.state.connection import Serial
from archiver.state.database import State
from archiver.state.schema import MIGRATIONS
from tests.conftest import FakeFactory
from tests.ids import shard_of
from tests.integration.archive_helpers import (
    archive,
    assert_byte_exact,
    manifest_of,
    picked_ids,
    quick_sleep,
    settings_for,
)
from tests.integration.cli_helpers import env_for, launch, osvi


def small(calls: int = 30, **more: Any) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=4096, size_max=8192, **more)


async def test_blocks_mixing_shards_duplicates_and_invalid_rows_are_settled_exactly(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "BLOCK", 7)  # duplicates within a block and across blocks
    fake = await make_fake(small(60))
    ids = picked_ids(fake)
    mine = [i for i in ids if shard_of(i, 2) == 0]
    theirs = [i for i in ids if shard_of(i, 2) == 1]
    lines = []
    for n, call_id in enumerate(ids):
        lines.append(call_id)
        if n % 3 == 0:
            lines.append(call_id.upper())  # the same id again, at once (in the same block)
        if n % 5 == 0:
            lines.append("not-a-call")
    lines += ids[:4]  # again, blocks later
    settings = settings_for(fake, tmp_path)
    items = read_ids(io.BytesIO(("\n".join(lines) + "\n").encode()), "<test>")
    options = RunOptions(shard=(0, 2), clocks=Clocks(sleep=quick_sleep))
    result = await execute(settings, run_input(items), NoProgress(), options)
    counts = result.counts
    assert counts.archived == len(mine)
    assert counts.other_shards == sum(1 for line in lines if line.lower() in set(theirs))
    assert counts.invalid_rows == sum(1 for line in lines if line == "not-a-call")
    expected_dupes = sum(1 for line in lines if line.lower() in set(mine)) - len(mine)
    assert counts.duplicates == expected_dupes
    assert result.exit_code == 1  # the invalid rows
    assert_byte_exact(fake, tmp_path, mine, (0, 2))
    assert sorted(c["call_id"] for c in manifest_of(tmp_path, (0, 2))["calls"]) == sorted(mine)


async def test_a_rerun_settles_archived_calls_in_the_feeder_without_a_worker(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    await archive(fake, tmp_path)
    asked = fake.stats.requests["recording"]
    (tmp_path / f"{picked_ids(fake)[0]}.mp4").unlink()  # a rerun must notice a deleted file
    again = await archive(fake, tmp_path)
    assert again.counts.already_archived == len(picked_ids(fake)) - 1
    assert again.counts.archived == 1
    assert fake.stats.requests["recording"] - asked <= 1 + again.counts.not_available


async def test_ids_are_taken_as_they_come_from_a_slow_stdin(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A producer that writes a few ids, then pauses: those few must not wait for a whole
    block (`osvi-archiver list | osvi-archiver run -`)."""
    fake = await make_fake(small(8))
    first, rest = picked_ids(fake)[:2], picked_ids(fake)[2:]
    process = await launch("run", "--out", str(tmp_path), "-", env=env_for(fake), stdout=None)
    assert process.stdin is not None
    process.stdin.write(("\n".join(first) + "\n").encode())
    await process.stdin.drain()
    for _ in range(200):
        if all(fake.stats.calls.get(c) and fake.stats.calls[c].downloads_complete for c in first):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first ids waited for more input")
    process.stdin.write(("\n".join(rest) + "\n").encode())
    process.stdin.close()
    await asyncio.wait_for(process.wait(), 60)
    assert process.returncode == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_a_second_run_rewrites_only_the_parts_it_changed(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "PART_CALLS", 5)
    fake = await make_fake(small(40))
    ids = picked_ids(fake)
    await archive(fake, tmp_path, ids[:20])
    parts = sorted((tmp_path / "manifest").iterdir())
    assert len(parts) == 4
    before = {p.name: p.stat().st_mtime_ns for p in parts}
    await archive(fake, tmp_path, ids[20:23])  # three new calls: part 4 only
    after = {p.name: p.stat().st_mtime_ns for p in sorted((tmp_path / "manifest").iterdir())}
    assert {name for name in after if after[name] != before.get(name)} == {"part-000004.json"}
    manifest = manifest_of(tmp_path)
    assert [c["call_id"] for c in manifest["calls"]][-3:] == ids[20:23]


def schema_1_archive(out: Path, ids: list[str]) -> None:
    """An archive as osvi-archiver 0.1 left it: a schema-3 state, one big manifest.json."""
    folder = out / ".osvi-archiver"
    folder.mkdir(parents=True, mode=0o700)
    db = sqlite3.connect(folder / "state.sqlite3")
    for step, migration in enumerate(MIGRATIONS[:3]):
        db.executescript(f"BEGIN; {migration} PRAGMA user_version={step + 1}; COMMIT;")
    db.executemany(
        "INSERT INTO calls (call_id, status, attempts, run_id, error_kind, error_message) "
        "VALUES (?, 'failed', 1, 'old', 'server_error', 'boom')",
        [(i,) for i in ids],
    )
    db.commit()
    db.close()
    calls = [{"call_id": i, "status": "failed"} for i in ids]
    (out / "manifest.json").write_text(json.dumps({"schema_version": 1, "calls": calls}))


async def test_a_schema_1_archive_is_migrated_on_its_first_run(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    old = [str(uuid.UUID(int=n + 1, version=4)) for n in range(25)]
    schema_1_archive(tmp_path, old)
    fake = await make_fake(small(10))
    result = await archive(fake, tmp_path, picked_ids(fake))
    assert result.exit_code == 0
    manifest = manifest_of(tmp_path)  # an index now, its parts valid
    listed = [c["call_id"] for c in manifest["calls"]]
    assert listed[: len(old)] == sorted(old)  # numbered by call_id, first
    assert listed[len(old) :] == picked_ids(fake)  # then in the order this run took them
    index = json.loads((tmp_path / "manifest.json").read_text())
    assert index["counts"]["failed"] == 25


# the export command


async def test_the_export_streams_the_whole_manifest_in_three_formats(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(20))
    await archive(fake, tmp_path)
    expected = [c["call_id"] for c in manifest_of(tmp_path)["calls"]]
    env = {"OSVI_OUT_DIR": str(tmp_path)}
    as_json = await osvi("manifest", env=env)
    assert as_json.code == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    jsonschema.Draft202012Validator(load_schema("export")).validate(document)
    assert [c["call_id"] for c in document["calls"]] == expected
    as_jsonl = await osvi("manifest", "--format", "jsonl", env=env)
    assert [json.loads(line)["call_id"] for line in as_jsonl.stdout.splitlines()] == expected
    as_csv = await osvi("manifest", "--format", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["call_id"] for row in rows] == expected
    failed = [row for row in rows if row["status"] != "archived"]
    assert all(row["error_kind"] for row in failed)
    assert {row["md5_checked"] for row in rows if row["status"] == "archived"} == {"true"}
    assert {row["md5_checked"] for row in failed} <= {""}


async def test_the_export_of_a_folder_without_a_manifest_is_exit_4(tmp_path: Path) -> None:
    done = await osvi("manifest", "--out", str(tmp_path))
    assert done.code == 4
    assert "no manifest" in done.stderr


# a large manifest write and a signal


def pending_migration(out: Path, count: int) -> None:
    """`count` archived calls in the state whose manifest was never written (as a schema-1
    archive is on its first run): the first write is of every part."""
    with State(out) as state:
        rows = [
            (str(uuid.UUID(int=n + 1, version=4)), "archived", f"x{n}.mp4", 1, "0" * 64,
             "2026-01-01T00:00:00.000000Z", 1, "old", n, 1)
            for n in range(count)
        ]  # fmt: skip
        state._db.executemany(
            "INSERT INTO calls (call_id, status, path, bytes, sha256, archived_at, attempts, "
            "run_id, seq, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        state.commit()


async def test_sigterm_during_a_large_manifest_write_is_answered_within_5_s(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending_migration(tmp_path, 200_000)
    monkeypatch.setattr(run_module, "MANIFEST_INTERVAL", 0.1)
    fake = await make_fake(FakeConfig(calls=20, size_min=64 * 1024, size_max=64 * 1024,
                                      bandwidth=32 * 1024))  # fmt: skip
    settings = settings_for(fake, tmp_path, concurrency=2)
    items: Iterator[InputItem] = iter(
        [CallId(c, "<t>", n) for n, c in enumerate(picked_ids(fake), 1)]
    )
    options = RunOptions(clocks=Clocks(sleep=quick_sleep))
    run = asyncio.create_task(execute(settings, run_input(items), NoProgress(), options))
    await asyncio.sleep(1.0)  # the periodic write of every part is under way
    assert not run.done()
    signalled = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    result = await asyncio.wait_for(run, 30)
    assert time.monotonic() - signalled < 5
    assert result.exit_code == 143
    [report] = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    assert report["exit_code"] == 143
    assert isinstance(report["max_loop_lag_ms"], float)


def test_invalid_rows_and_other_shards_need_no_state_read(tmp_path: Path) -> None:
    """settle() claims only the calls that are this shard's."""
    from archiver.engine.pipeline import Pipeline, PoolPlan
    from archiver.monitoring.counts import RunView

    with State(tmp_path) as state:
        claimed: list[list[str]] = []
        original = state.claim_block

        def spy(ids: list[str], run_id: str) -> Any:
            claimed.append(list(ids))
            return original(ids, run_id)

        state.claim_block = spy  # type: ignore[method-assign,assignment]
        plan = PoolPlan("r", 1, LocalFolder(tmp_path).on_disk(), shard=(0, 2))
        pipeline = Pipeline(state, None, RunView(), plan)  # type: ignore[arg-type]
        ids = [str(uuid.UUID(int=n + 1, version=4)) for n in range(20)]

        class Quiet:
            def finished(self, item: object) -> None:
                pass

        block: list[Any] = [CallId(i, "<t>", n) for n, i in enumerate(ids)]
        block.append(InvalidRow("<t>", 99, "not a UUID", "x"))
        todo = pipeline.settle(block, Quiet())  # type: ignore[arg-type]
        mine = [i for i in ids if shard_of(i, 2) == 0]
        assert claimed == [mine]
        assert [item.call_id for item in todo] == mine


def _plans(db_path: Path, statements: list[str]) -> dict[str, list[str]]:
    """Each statement read or written through the calls table, with SQLite's plan for it."""
    db = sqlite3.connect(db_path)
    db.execute("CREATE TEMP TABLE taken (call_id TEXT PRIMARY KEY) WITHOUT ROWID")
    plans: dict[str, list[str]] = {}
    for statement in statements:
        text = " ".join(statement.split())
        if "calls" not in text or not text.upper().startswith(("SELECT", "UPDATE", "DELETE")):
            continue
        unbound = [None] * text.count("?")  # the plan does not depend on the values
        plans[text] = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {text}", unbound)]
    db.close()
    return plans


async def test_a_run_into_an_archive_never_scans_its_calls_table(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every statement a run (rerun, new calls, a failure retried, the manifest, the report)
    makes against the calls table searches an index: none reads the whole table, whose
    size is the archive's (a nightly into ten million calls)."""
    fake = await make_fake(small(40, faults={FaultKind.REC_500: Fault(rate=0.3, times=None)}))
    ids = picked_ids(fake)
    await archive(fake, tmp_path, ids[:25], max_attempts=1)
    statements: list[str] = []
    real_connect = sqlite3.connect

    class Recorded(Serial):
        """Notes each statement's text. Not set_trace_callback: SQLite calls it holding the
        connection's mutex, and a commit in a worker thread then waits for the GIL that the
        loop's thread holds while it waits for that mutex (a deadlock of the test, not of
        the tool)."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            statements.append(sql)
            return super().execute(sql, *args)

        def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
            statements.append(sql)
            return super().executemany(sql, *args)

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = real_connect(*args, **{**kwargs, "factory": Recorded})
        return db

    monkeypatch.setattr(sqlite3, "connect", traced)
    result = await archive(fake, tmp_path, ids[15:], max_attempts=1)
    monkeypatch.undo()
    assert result.counts.already_archived > 0
    assert result.counts.archived > 0
    plans = _plans(tmp_path / ".osvi-archiver" / "state.sqlite3", statements)
    assert len(plans) >= 8  # claims, records, the pending first, parts, report, counts
    scans = {text: plan for text, plan in plans.items() if any(
        step.startswith("SCAN calls") and "calls_to_retry" not in step for step in plan
    )}  # fmt: skip
    assert scans == {}
