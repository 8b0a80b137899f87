"""Survives everything (SPEC §6): real processes, real signals, kill -9, full and read-only
disks, a busy or broken state; each ends with a consistent archive and the documented code."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.fake.config import CALL_PROPERTIES, HOSTILE
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import (
    archive,
    assert_byte_exact,
    manifest_of,
    picked_ids,
)
from tests.integration.cli_helpers import (
    Finished,
    clean_environ,
    env_for,
    finish,
    osvi,
    start_osvi,
)


def slow(calls: int) -> FakeConfig:
    """Downloads of about a second each: a run is long enough to interrupt mid-way."""
    return FakeConfig(calls=calls, size_min=192 * 1024, size_max=256 * 1024, bandwidth=256 * 1024)


Mount = Callable[..., Path]


def ids_of(fake: FakeOSVI) -> bytes:
    return "\n".join(c.call_id for c in fake.calls).encode()


async def wait_for_progress(out: Path, archived: int, deadline: float = 20) -> None:
    """Until `archived` recordings are in place and at least one download is in flight."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        finals = [p for p in out.glob("*.mp4")]
        parts = list(out.glob("*.part"))
        if len(finals) >= archived and parts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run made no progress in time")


async def until_said(process: asyncio.subprocess.Process, text: str, deadline: float = 5) -> str:
    """Read the process's stderr until a line holds `text`; what was read."""
    assert process.stderr is not None
    said = ""
    async with asyncio.timeout(deadline):
        while text not in said:
            line = await process.stderr.readline()
            assert line, f"ended without saying {text!r}: {said}"
            said += line.decode()
    return said


def archived_in_state(out: Path) -> dict[str, tuple[str, int, str]]:
    """What the state (read-only) says is archived: path, bytes, sha256."""
    db = sqlite3.connect(f"file:{out / '.osvi-archiver' / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT call_id, path, bytes, sha256 FROM calls WHERE status = 'archived'"
        ).fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def assert_state_matches_disk(out: Path) -> None:
    for path, size, sha in archived_in_state(out).values():
        data = (out / path).read_bytes()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == sha


def downloads_per_call(fake: FakeOSVI) -> dict[str, int]:
    return {cid: c.downloads_complete for cid, c in fake.stats.calls.items()}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_signal_stops_cleanly_and_a_rerun_completes(
    make_fake: FakeFactory, tmp_path: Path, signum: int, code: int
) -> None:
    fake = await make_fake(slow(24))
    run = await start_osvi(
        "run", "--out", str(tmp_path), "--concurrency", "4", env=env_for(fake), stdin=ids_of(fake)
    )
    await wait_for_progress(tmp_path, archived=2)
    signalled = time.monotonic()
    run.send_signal(signum)
    done = await finish(run)
    assert time.monotonic() - signalled < 5
    assert done.code == code, done.stderr
    assert f"interrupted by {signal.Signals(signum).name}" in done.stderr
    assert list(tmp_path.rglob("*.part")) == []
    assert_state_matches_disk(tmp_path)
    report = json.loads(next((tmp_path / "runs").iterdir()).read_text())
    assert report["interrupted"] is True
    assert report["exit_code"] == code
    before = set(archived_in_state(tmp_path))

    again = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids_of(fake))
    assert again.code == 0, again.stderr
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    completed = downloads_per_call(fake)
    for call_id in picked_ids(fake):  # archived ones were not redone, cancelled ones once
        assert completed[call_id] == 1, call_id
    assert before <= set(archived_in_state(tmp_path))


async def test_sigterm_twice_at_once_as_timeout_sends_it_stops_cleanly(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """coreutils `timeout` signals the child and then its process group: one request to stop,
    so the report and metrics are written and no `.part` is left, as for one SIGTERM."""
    fake = await make_fake(slow(24))
    out, metrics = tmp_path / "out", tmp_path / "osvi.prom"
    run = await start_osvi(
        "run", "--out", str(out), "--concurrency", "4", "--metrics-file", str(metrics),
        env=env_for(fake), stdin=ids_of(fake),
    )  # fmt: skip
    await wait_for_progress(out, archived=1)
    run.send_signal(signal.SIGTERM)
    said = await until_said(run, "SIGTERM: stopping")  # the first taken (else they merge)
    run.send_signal(signal.SIGTERM)
    done = await finish(run, deadline=10)
    done.stderr = said + done.stderr
    assert done.code == 143, done.stderr
    assert "the same request" in done.stderr
    assert "exiting now" not in done.stderr
    assert list(out.rglob("*.part")) == []
    report = json.loads(next((out / "runs").iterdir()).read_text())
    assert report["exit_code"] == 143
    assert 'osvi_archiver_exit_code{command="run"} 143' in metrics.read_text()
    assert_state_matches_disk(out)


async def test_another_signal_right_after_the_first_exits_at_once(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(slow(24))
    run = await start_osvi(
        "run", "--out", str(tmp_path), "--concurrency", "4", env=env_for(fake), stdin=ids_of(fake)
    )
    await wait_for_progress(tmp_path, archived=1)
    run.send_signal(signal.SIGINT)
    await until_said(run, "SIGINT: stopping")
    run.send_signal(signal.SIGTERM)
    done = await finish(run, deadline=5)
    assert done.code == 143
    assert "SIGTERM again, exiting now" in done.stderr
    assert_state_matches_disk(tmp_path)
    for final in tmp_path.glob("*.mp4"):  # whatever has a final name is complete
        call_id = final.stem
        assert hashlib.sha256(final.read_bytes()).hexdigest() == fake.account.expected_sha256(
            call_id
        )
    again = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids_of(fake))
    assert again.code == 0
    assert list(tmp_path.rglob("*.part")) == []


# Run by a child of a new session that takes the pseudo-terminal on its stdin as its
# controlling terminal: it is then the terminal's foreground process group, as a command
# typed at a shell prompt is, and a Ctrl-C typed into the terminal sends it SIGINT.
_AT_A_TERMINAL = """
import fcntl, os, runpy, sys, termios
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
sys.argv = ["osvi-archiver", *sys.argv[1:]]
runpy.run_module("archiver", run_name="__main__")
"""


async def test_ctrl_c_pressed_twice_at_a_terminal_exits_at_once(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(slow(24))
    ids = tmp_path / "ids.txt"
    ids.write_bytes(ids_of(fake))
    out = tmp_path / "out"
    master, slave = os.openpty()
    try:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _AT_A_TERMINAL, "run", "--out", str(out), "--concurrency",
            "4", str(ids), stdin=slave, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=clean_environ(**env_for(fake)),
        )  # fmt: skip
    finally:
        os.close(slave)
    try:
        await wait_for_progress(out, archived=1)
        os.write(master, b"\x03")  # Ctrl-C, as the terminal's line discipline reads it
        said = await until_said(run, "SIGINT: stopping")
        os.write(master, b"\x03")  # pressed again at once: well within 3 s
        done = await finish(run, deadline=5)
    finally:
        os.close(master)
    done.stderr = said + done.stderr
    assert done.code == 130, done.stderr
    assert "Ctrl-C again to exit at once" in done.stderr
    assert "SIGINT again, exiting now" in done.stderr
    assert_state_matches_disk(out)


async def test_kill_9_loses_nothing_recorded_and_a_rerun_redoes_only_unrecorded_calls(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(slow(24))
    run = await start_osvi(
        "run", "--out", str(tmp_path), "--concurrency", "4", env=env_for(fake), stdin=ids_of(fake)
    )
    await wait_for_progress(tmp_path, archived=3)
    run.kill()
    await run.wait()
    assert list(tmp_path.glob("*.part"))  # a crash leaves them: the next run must clean up
    recorded = archived_in_state(tmp_path)
    assert_state_matches_disk(tmp_path)
    # In flight (4 workers), plus those that finished within the last grouped commit
    # (COMMIT_AFTER = 0.25 s; each download here takes about a second: at most 4 more).
    redone_max = 4 + 4

    again = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids_of(fake))
    assert again.code == 0, again.stderr
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert list(tmp_path.rglob("*.part")) == []
    requests = {cid: c.requests["download"] for cid, c in fake.stats.calls.items()}
    for call_id in recorded:
        assert requests[call_id] == 1  # recorded as archived: never downloaded again
    redone = [cid for cid, n in requests.items() if n > 1]
    assert len(redone) <= redone_max


async def test_manifest_is_valid_json_at_every_instant(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.engine import lifecycle as run_module

    monkeypatch.setattr(run_module, "MANIFEST_INTERVAL", 0.02)
    fake = await make_fake(FakeConfig(calls=60, size_min=8192, size_max=16384, bandwidth=64 * 1024))
    errors: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        path = tmp_path / "manifest.json"
        while not stop.is_set():
            try:
                json.loads(path.read_bytes())
                reads += 1
            except FileNotFoundError:
                pass
            except ValueError as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        await archive(fake, tmp_path, concurrency=8)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert reads > 10


# Disk full and read-only folders, on real small filesystems where this machine allows mounts.


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    mounted: list[Path] = []

    def mount(where: Path, size: str, *, readonly: bool = False) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        options = f"size={size},mode=0700" + (",ro" if readonly else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_disk_full_stops_cleanly_with_exit_4_and_says_where(
    make_fake: FakeFactory,
    tmp_path: Path,
    tmpfs: Mount,
) -> None:
    out = tmpfs(tmp_path / "small", "1m")
    fake = await make_fake(FakeConfig(calls=30, size_min=200 * 1024, size_max=256 * 1024))
    done = await osvi("run", "--out", str(out), env=env_for(fake), stdin=ids_of(fake))
    assert done.code == 4, done.stderr
    assert "disk full" in done.stderr
    assert str(out) in done.stderr
    assert list(out.rglob("*.part")) == []
    assert_state_matches_disk(out)
    for final in out.glob("*.mp4"):  # no half files under a final name
        assert hashlib.sha256(final.read_bytes()).hexdigest() == fake.account.expected_sha256(
            final.stem
        )


def fill(folder: Path) -> None:
    """Leave no free byte on the file system of `folder`."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


async def test_disk_full_while_the_state_is_opened_is_disk_full_not_corruption(
    make_fake: FakeFactory,
    tmp_path: Path,
    tmpfs: Mount,
) -> None:
    """A full disk met by SQLite (SQLITE_FULL) was called a corrupt state, with the advice
    to move it aside: every call downloaded again."""
    out = tmpfs(tmp_path / "full", "256k")
    (out / ".osvi-archiver").mkdir(mode=0o700)
    (out / ".osvi-archiver" / "lock").write_bytes(b"{}" * 2048)  # its page, freed for the pid
    fill(out)
    fake = await make_fake(FakeConfig(calls=3, size_min=8192, size_max=16384))
    done = await osvi("run", "--out", str(out), env=env_for(fake), stdin=ids_of(fake))
    assert done.code == 4, done.stderr
    assert "disk full" in done.stderr
    assert "Move it aside" not in done.stderr
    assert "unreadable" not in done.stderr
    assert "state" in done.stderr  # it was SQLite that met the full disk


async def test_disk_full_when_the_lock_is_taken_is_exit_4(
    make_fake: FakeFactory,
    tmp_path: Path,
    tmpfs: Mount,
) -> None:
    out = tmpfs(tmp_path / "full", "256k")
    fill(out)
    fake = await make_fake(FakeConfig(calls=3, size_min=8192, size_max=16384))
    done = await osvi("run", "--out", str(out), env=env_for(fake), stdin=ids_of(fake))
    assert done.code == 4, done.stderr
    assert "disk full" in done.stderr


async def test_read_only_folder_stops_with_exit_4_and_a_clear_message(
    make_fake: FakeFactory,
    tmp_path: Path,
    tmpfs: Mount,
) -> None:
    out = tmp_path / "archive"
    tmpfs(out / "sub", "1m", readonly=True)
    fake = await make_fake(FakeConfig(calls=5, size_min=8192, size_max=16384))
    done = await osvi(
        "run",
        "--out",
        str(out),
        "--layout",
        "sub/{call_id}{ext}",
        env=env_for(fake),
        stdin=ids_of(fake),
    )
    assert done.code == 4, done.stderr
    assert "cannot write" in done.stderr
    assert "sub" in done.stderr
    manifest_of(out)  # the archive itself stays consistent


async def test_injected_enospc_stops_the_run_with_exit_4_and_no_half_files(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on any machine: a writer that raises ENOSPC after the first file."""
    import errno

    from archiver.archive import storage

    real_write = storage.PartFile.write
    written = 0

    async def full_after_a_while(
        self: storage.PartFile, data: bytes, total: int | None, also: Any = None
    ) -> None:
        nonlocal written
        written += len(data)
        if written > 100_000:
            raise storage.local_error(OSError(errno.ENOSPC, "No space left"), self.path, total)
        await real_write(self, data, total, also)

    monkeypatch.setattr(storage.PartFile, "write", full_after_a_while)
    fake = await make_fake(FakeConfig(calls=20, size_min=64 * 1024, size_max=64 * 1024))
    result = await archive(fake, tmp_path, concurrency=2)
    assert result.exit_code == 4
    assert "disk full" in str(result.error)
    assert list(tmp_path.rglob("*.part")) == []
    assert_state_matches_disk(tmp_path)
    manifest_of(tmp_path)


async def test_a_lock_left_by_a_killed_process_does_not_block(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    holder = await asyncio.create_subprocess_exec(  # takes the lock, then is killed
        *[
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from archiver.destinations.lock import ArchiveLock\n"
            "lock = ArchiveLock(Path(sys.argv[1]))\n"
            "lock.acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)",
            str(tmp_path),
        ],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"locked"
        busy = await osvi(
            "run",
            "--out",
            str(tmp_path),
            stdin=b"",
            env={"OSVI_API_TOKEN": "x" * 16, "OSVI_BASE_URL": "http://127.0.0.1:9"},
        )
    finally:
        holder.kill()
        await holder.wait()
    assert busy.code == 75
    assert f"pid {holder.pid}" in busy.stderr
    fake = await make_fake(FakeConfig(calls=3, size_min=8192, size_max=8192))
    done = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids_of(fake))
    assert done.code == 0, done.stderr


@pytest.mark.parametrize("damage", ["corrupt", "newer"])
async def test_unreadable_state_exits_4_and_is_left_untouched(
    make_fake: FakeFactory, tmp_path: Path, damage: str
) -> None:
    fake = await make_fake(FakeConfig(calls=3, size_min=8192, size_max=8192))
    await archive(fake, tmp_path)
    state = tmp_path / ".osvi-archiver" / "state.sqlite3"
    for extra in state.parent.glob("state.sqlite3-*"):
        extra.unlink()
    if damage == "corrupt":
        state.write_bytes(b"this is not a database" * 100)
    else:
        db = sqlite3.connect(state)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
    before = state.read_bytes()
    done = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids_of(fake))
    assert done.code == 4, done.stderr
    assert str(state) in done.stderr
    assert ("newer" in done.stderr) if damage == "newer" else ("unreadable" in done.stderr)
    assert state.read_bytes() == before


async def test_every_fault_at_30_percent_ends_byte_exact_and_counted_once(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {k: Fault(rate=0.3) for k in FaultKind if k not in CALL_PROPERTIES | HOSTILE}
    config = FakeConfig(
        calls=80, size_min=8192, size_max=65536, retry_after="0", stall_seconds=2, faults=faults
    )
    fake = await make_fake(config)
    result = await archive(fake, tmp_path, concurrency=16, read_timeout=0.5, max_attempts=12)
    assert result.exit_code == 0, result.error
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert result.counts.archived == len(picked_ids(fake))
    assert result.counts.done == len(fake.calls)
    calls = manifest_of(tmp_path)["calls"]
    assert len(calls) == len({c["call_id"] for c in calls}) == len(fake.calls)
    assert sum(fake.stats.faults_fired.values()) > 100


async def test_a_fault_that_never_clears_fails_and_retry_failed_takes_only_those(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    healthy = await make_fake(FakeConfig(calls=20, size_min=8192, size_max=16384))
    broken_ids = frozenset(picked_ids(healthy)[:3])
    faults = {FaultKind.REC_500: Fault(calls=broken_ids, times=None)}
    broken = await make_fake(FakeConfig(calls=20, size_min=8192, size_max=16384, faults=faults))
    first = await osvi(
        "run",
        "--out",
        str(tmp_path),
        "--max-attempts",
        "3",
        env=env_for(broken),
        stdin=ids_of(broken),
    )
    assert first.code == 1
    failed = {c["call_id"]: c for c in manifest_of(tmp_path)["calls"] if c["status"] == "failed"}
    assert set(failed) == broken_ids
    assert all(
        c["error"]["kind"] == "recording_server_error" and c["attempts"] == 3
        for c in failed.values()
    )

    retried = await osvi("run", "--out", str(tmp_path), "--retry-failed", env=env_for(healthy))
    assert retried.code == 0, retried.stderr
    assert set(healthy.stats.calls) >= broken_ids
    asked = {cid for cid, c in healthy.stats.calls.items() if c.requests["recording"]}
    pending = {c["call_id"] for c in manifest_of(tmp_path)["calls"] if c["status"] == "pending"}
    assert asked - pending == broken_ids  # only the failed (and pending) calls were taken
    assert_byte_exact(healthy, tmp_path, picked_ids(healthy))


async def test_retry_failed_with_input_is_a_usage_error(tmp_path: Path) -> None:
    done: Finished = await osvi(
        "run",
        "--retry-failed",
        "calls.csv",
        "--out",
        str(tmp_path),
        env={"OSVI_API_TOKEN": "x" * 16},
    )
    assert done.code == 2
    assert "--retry-failed" in done.stderr
