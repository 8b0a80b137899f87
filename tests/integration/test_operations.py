"""What an operator sees of a run (issue 7): status lines under a pipe, the live display on a
terminal, JSON Lines logs, and the Prometheus textfile. Real processes against the fake."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import stat
import struct
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.fake import FakeConfig, FakeOSVI
from archiver.fake.config import Fault, FaultKind
from tests.conftest import FakeFactory
from tests.ids import shard_of
from tests.integration.archive_helpers import assert_byte_exact, picked_ids
from tests.integration.cli_helpers import env_for, osvi

KiB = 1024
ANSI = "\x1b["


async def fake_with_ids(
    make_fake: FakeFactory, count: int, **config: Any
) -> tuple[FakeOSVI, list[str]]:
    """A fake of small recordings and `count` of its calls that have one."""
    settings: dict[str, Any] = {"size_min": 8 * KiB, "size_max": 32 * KiB, **config}
    fake = await make_fake(FakeConfig(calls=3 * count, **settings))
    ids = picked_ids(fake)[:count]
    assert len(ids) == count
    return fake, ids


def id_file(folder: Path, ids: list[str], *extra_lines: str) -> Path:
    path = folder / "ids.txt"
    path.write_text("".join(f"{i}\n" for i in [*ids, *extra_lines]))
    return path


Samples = dict[str, list[tuple[dict[str, str], float]]]


def metrics_of(path: Path) -> Samples:
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(path.read_text())
    }


def value(families: Samples, name: str, **labels: str) -> float:
    [found] = [v for got, v in families[name] if labels.items() <= got.items()]
    return found


# a. under a pipe: status lines, no escapes


async def test_under_a_pipe_status_lines_then_the_summary(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    # 12 recordings of 64 KiB at 256 KiB/s each, 2 at a time: about 1.5 s of downloading.
    fake, ids = await fake_with_ids(
        make_fake, 12, size_min=64 * KiB, size_max=64 * KiB, bandwidth=256 * KiB
    )
    out = tmp_path / "archive"
    done = await osvi(
        "run",
        "--out",
        str(out),
        "--concurrency",
        "2",
        "--status-interval",
        "0.2",
        str(id_file(tmp_path, ids)),
        env=env_for(fake),
    )
    assert done.code == 0, done.stderr
    assert ANSI not in done.stderr
    status = [line for line in done.stderr.splitlines() if "progress:" in line]
    assert status, done.stderr
    assert all(" of 12 ids (" in line for line in status), status
    assert any("downloading" in line and "elapsed" in line for line in status)
    assert re.search(r"progress: \d+ of 12 ids \(\d+%\); archived \d+, failed 0", status[0])
    summary = done.stderr[done.stderr.index("osvi-archiver summary") :]
    assert "progress:" not in summary  # the status lines stop before the summary
    assert "archived          12" in summary
    assert done.stderr.rstrip().endswith("exit code         0")
    assert_byte_exact(fake, out, ids)


# b. on a terminal: the live display


@dataclass
class OnTerminal:
    code: int
    stdout: str
    terminal: str  # what the terminal received (stderr), CRLF turned back into LF


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the last writer closed the slave
            return
        if not data:
            return
        into.extend(data)


async def osvi_on_terminal(*args: str, env: dict[str, str], deadline: float = 60) -> OnTerminal:
    """`python -m archiver ARGS` with stderr on a pseudo-terminal of 40 x 120."""
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    hidden = ("OSVI_", "NO_COLOR", "FORCE_COLOR", "TTY_", "COLUMNS", "LINES")
    base = {k: v for k, v in os.environ.items() if not k.startswith(hidden)}
    received = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, received), daemon=True)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "archiver",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
            env={**base, "TERM": "xterm-256color", **env},
        )
    finally:
        os.close(slave)
    reader.start()
    try:
        out, _ = await asyncio.wait_for(process.communicate(), deadline)
        await asyncio.to_thread(reader.join, 10)
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
    assert process.returncode is not None
    terminal = received.decode("utf-8", "replace").replace("\r\n", "\n")
    return OnTerminal(process.returncode, out.decode(), terminal)


async def test_on_a_terminal_the_live_display_is_drawn_then_the_summary(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(
        make_fake, 6, size_min=64 * KiB, size_max=64 * KiB, bandwidth=128 * KiB
    )
    out = tmp_path / "archive"
    done = await osvi_on_terminal(
        "run", "--out", str(out), "--progress", "auto", str(id_file(tmp_path, ids)),
        env=env_for(fake),
    )  # fmt: skip
    assert done.code == 0, done.terminal
    assert ANSI in done.terminal
    assert "archiving" in done.terminal
    assert re.search(r"\d+ of 6 ids", done.terminal), done.terminal
    assert "progress:" not in done.terminal  # a terminal gets the display, not status lines
    summary = done.terminal[done.terminal.rindex("osvi-archiver summary") :]
    assert "archived          6" in summary
    assert ANSI not in summary  # the display is gone before the summary is printed
    assert done.terminal.rstrip().endswith("exit code         0")
    assert fake.token not in done.terminal
    assert_byte_exact(fake, out, ids)


async def test_on_a_terminal_progress_never_draws_nothing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(
        make_fake, 4, size_min=64 * KiB, size_max=64 * KiB, bandwidth=256 * KiB
    )
    out = tmp_path / "archive"
    done = await osvi_on_terminal(
        "run", "--out", str(out), "--progress", "never", "--status-interval", "0.1",
        str(id_file(tmp_path, ids)), env=env_for(fake),
    )  # fmt: skip
    assert done.code == 0, done.terminal
    assert "archiving" not in done.terminal
    assert "progress:" not in done.terminal
    assert ANSI not in done.terminal
    assert "osvi-archiver summary" in done.terminal
    assert "archived          4" in done.terminal


# c. JSON Lines logs


async def test_json_logs_of_a_run_with_a_call_that_fails_for_good(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(make_fake, 4)
    victim = ids[1]
    # The recording host answers 500 for this call, every time (times=None never clears).
    fake.config.faults[FaultKind.REC_500] = Fault(calls=frozenset({victim}), times=None)
    done = await osvi(
        "--log-format", "json", "run", "--out", str(tmp_path / "archive"),
        "--max-attempts", "2", "-v", str(id_file(tmp_path, ids)),
        env=env_for(fake),
    )  # fmt: skip
    assert done.code == 1, done.stderr
    assert fake.token not in done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    assert all(line["time"].endswith("Z") and line["level"] for line in lines)
    events = [line["event"] for line in lines]
    # -v also lets libraries' debug records through (as log.<logger>), JSON like the rest.
    ours = [e for e in events if not e.startswith("log.")]
    assert ours == ["run_started", "retry", "call_failed", "loop_lag", "run_finished"], events

    retries = [line for line in lines if line["event"] == "retry"]
    assert [(r["call_id"], r["attempt"]) for r in retries] == [(victim, 1)]
    assert retries[0]["level"] == "DEBUG"
    assert retries[0]["error_kind"]

    [failed] = [line for line in lines if line["event"] == "call_failed"]
    assert failed["level"] == "ERROR"
    assert failed["call_id"] == victim
    assert failed["attempt"] == 2
    assert failed["status"] == "failed"
    assert failed["error_kind"]

    finished = lines[-1]
    assert finished["exit_code"] == 1
    assert finished["counts"]["archived"] == 3
    assert finished["counts"]["failed"] == 1
    assert finished["counts"]["failed_ids"] == [victim]
    assert "osvi-archiver summary" not in done.stderr  # the summary is the run_finished event


# d. the Prometheus textfile


async def test_metrics_file_of_a_good_run_then_of_a_failed_one(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(make_fake, 5)
    out, folder = tmp_path / "archive", tmp_path / "metrics"
    folder.mkdir()
    prom = folder / "osvi.prom"
    args = ("run", "--out", str(out), "--metrics-file", str(prom))

    good = await osvi(*args, str(id_file(tmp_path, ids)), env=env_for(fake))
    assert good.code == 0, good.stderr
    first = metrics_of(prom)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert value(first, "osvi_archiver_calls", status="archived", command="run") == 5
    assert value(first, "osvi_archiver_calls", status="failed") == 0
    assert value(first, "osvi_archiver_exit_code") == 0
    sizes = [call.size for call in fake.calls if call.call_id in ids]
    assert value(first, "osvi_archiver_bytes") == sum(sizes)
    last_success = value(first, "osvi_archiver_last_success_timestamp_seconds")
    assert last_success == value(first, "osvi_archiver_run_timestamp_seconds")

    bad = await osvi(*args, str(id_file(tmp_path, ids, "12345")), env=env_for(fake))
    assert bad.code == 1, bad.stderr
    second = metrics_of(prom)
    assert value(second, "osvi_archiver_exit_code") == 1
    assert value(second, "osvi_archiver_calls", status="archived") == 0
    assert value(second, "osvi_archiver_calls", status="already_archived") == 5
    assert value(second, "osvi_archiver_input_rows_skipped", reason="invalid") == 1
    assert value(second, "osvi_archiver_last_success_timestamp_seconds") == last_success
    assert value(second, "osvi_archiver_run_timestamp_seconds") > last_success
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert [p.name for p in folder.iterdir()] == ["osvi.prom"]


async def test_metrics_file_in_a_missing_folder_is_a_usage_error(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(make_fake, 2)
    out, missing = tmp_path / "archive", tmp_path / "no-such-folder"
    done = await osvi(
        "run", "--out", str(out), "--metrics-file", str(missing / "osvi.prom"),
        str(id_file(tmp_path, ids)), env=env_for(fake),
    )  # fmt: skip
    assert done.code == 2, done.stderr
    assert str(missing) in done.stderr
    assert not out.exists()
    assert not missing.exists()


# e. a shard's textfile


async def test_metrics_file_of_a_shard_labels_every_sample(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(make_fake, 8)
    prom = tmp_path / "shard0.prom"
    done = await osvi(
        "run", "--out", str(tmp_path / "archive"), "--shard", "0/2", "--metrics-file", str(prom),
        str(id_file(tmp_path, ids)), env=env_for(fake),
    )  # fmt: skip
    assert done.code == 0, done.stderr
    families = metrics_of(prom)
    samples = [labels for series in families.values() for labels, _ in series]
    assert len(samples) == 6 + 3 + 5  # last success included: the run exited 0
    assert all(labels["shard"] == "0/2" for labels in samples), samples
    mine = sum(1 for i in ids if shard_of(i, 2) == 0)
    assert value(families, "osvi_archiver_calls", status="archived") == mine
    assert value(families, "osvi_archiver_input_rows_skipped", reason="other_shard") == 8 - mine


# Review follow-ups: JSON before the settings, JSON on a terminal, bad metrics paths, dry run.


async def test_a_settings_error_with_json_logs_asked_is_a_json_fatal_event(
    tmp_path: Path,
) -> None:
    env = {
        "OSVI_LOG_FORMAT": "json",
        "OSVI_CONCURRENCY": "abc",
        "OSVI_API_TOKEN": "tok-ABC-12345678",
    }
    done = await osvi("run", "--out", str(tmp_path), "-", env=env, stdin=b"")
    assert done.code == 2
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == ["fatal"]
    assert lines[0]["exit_code"] == 2
    assert "concurrency" in lines[0]["message"]


async def test_json_logs_on_a_terminal_get_status_lines_not_the_display(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, ids = await fake_with_ids(
        make_fake, 4, size_min=64 * KiB, size_max=64 * KiB, bandwidth=128 * KiB
    )
    done = await osvi_on_terminal(
        "run", "--out", str(tmp_path / "a"), "--log-format", "json", "--status-interval", "0.2",
        str(id_file(tmp_path, ids)), env=env_for(fake),
    )  # fmt: skip
    assert done.code == 0, done.terminal
    lines = [json.loads(line) for line in done.terminal.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "progress" in events
    assert events[-1] == "run_finished"


@pytest.mark.parametrize("problem", ["a folder", "not writable"])
async def test_a_metrics_file_that_cannot_be_written_is_refused_before_anything(
    make_fake: FakeFactory, tmp_path: Path, problem: str
) -> None:
    fake = await make_fake(FakeConfig(calls=2, size_min=1024, size_max=2048))
    folder = tmp_path / "metrics"
    folder.mkdir()
    if problem == "a folder":
        target = folder
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into any folder")
        folder.chmod(0o500)
        target = folder / "osvi.prom"
    out = tmp_path / "archive"
    done = await osvi(
        "run", "--out", str(out), "--metrics-file", str(target), "-", env=env_for(fake),
        stdin=picked_ids(fake)[0].encode(),
    )  # fmt: skip
    folder.chmod(0o700)
    assert done.code == 2
    assert problem.split()[-1] in done.stderr
    assert not out.exists()


async def test_sync_dry_run_without_a_token_prints_nothing_and_exits_2(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=2, size_min=1024, size_max=2048))
    done = await osvi(
        "sync", "--dry-run", "--since", "7d", "--out", str(tmp_path),
        env={"OSVI_BASE_URL": fake.base_url},
    )  # fmt: skip
    assert done.code == 2
    assert done.stdout == ""
    assert "token" in done.stderr
