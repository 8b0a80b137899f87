"""The run never lies (issue 11): whatever happens, and wherever an unexpected exception
comes from, process exit code = run report `exit_code` = `osvi_archiver_exit_code`, and the
last success moves only on a real 0. One call's failure, expected or not, is that call's."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from archiver.archive.storage import PartFile
from archiver.engine import call as sidecars_module
from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.engine.outputs import RunResult
from archiver.engine.pipeline import Pipeline
from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.monitoring.counts import Counts
from archiver.net import urls
from archiver.osvi.api import OsviApi
from archiver.transfer import body_checks as body_module
from archiver.transfer import download as download_module
from archiver.transfer.download import Transfer
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import (
    assert_byte_exact,
    manifest_of,
    picked_ids,
    quick_sleep,
)
from tests.integration.cli_helpers import env_for, finish, osvi, start_osvi
from tests.integration.wire_helpers import run_ids, settings_at

Patch = Callable[[pytest.MonkeyPatch, str], None]


def small(calls: int = 8, **more: Any) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8192, size_max=16384, **more)


def told(out: Path, metrics: Path) -> tuple[int, int | None]:
    """(the run report's exit_code, the textfile's osvi_archiver_exit_code)."""
    [report] = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    found = re.search(r"^osvi_archiver_exit_code\{[^}]*\} (\d+)$", metrics.read_text(), re.M)
    return report["exit_code"], int(found[1]) if found else None


def last_success_in(metrics: Path) -> bool:
    return "osvi_archiver_last_success_timestamp_seconds" in metrics.read_text()


async def run_fake(
    fake: FakeOSVI, out: Path, metrics: Path, *, force: bool = False, **flags: Any
) -> RunResult:
    settings = settings_at(fake.base_url, out, fake.token, metrics_file=metrics, **flags)
    return await run_ids(
        settings, picked_ids(fake), RunOptions(force=force, clocks=Clocks(sleep=quick_sleep))
    )


def raise_for(target: str, where: Callable[..., Any], sees: Callable[..., str]) -> Any:
    """`where`, raising an unexpected RuntimeError when `sees(args)` mentions `target`."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if target in sees(*args, **kwargs):
            raise RuntimeError(f"boom in {where.__qualname__}")
        return await where(*args, **kwargs)

    return wrapper


def at_url_request(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = OsviApi.recording_url
    monkeypatch.setattr(OsviApi, "recording_url", raise_for(target, original, lambda _s, c: c))


def at_url_check(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = urls.check_recording_url

    def check(url: Any, rules: Any) -> Any:
        if target in str(url):
            raise ValueError("a URL parser's surprise")
        return original(url, rules)

    monkeypatch.setattr(download_module, "check_recording_url", check)


def at_download_open(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = PartFile.__dict__["create"]
    wrapper = raise_for(target, original.__func__, lambda _cls, path, _mode: str(path))
    monkeypatch.setattr(PartFile, "create", classmethod(wrapper))


def at_body(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = body_module.Pace.received

    def received(self: Any, count: int) -> None:
        if target in self._shown:
            raise UnicodeError("a decoder's surprise")
        original(self, count)

    monkeypatch.setattr(body_module.Pace, "received", received)


def at_verify(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = Transfer.verify

    def verify(self: Transfer) -> None:
        if target in str(self.final):
            raise KeyError("a bug in verify")
        original(self)

    monkeypatch.setattr(Transfer, "verify", verify)


def at_commit(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = PartFile.commit
    monkeypatch.setattr(PartFile, "commit", raise_for(target, original, lambda s, f: str(f)))


def at_sidecars(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    original = sidecars_module._save_json
    monkeypatch.setattr(
        sidecars_module,
        "_save_json",
        raise_for(target, original, lambda _p, _a, call_id, _r, _d, _o: call_id),
    )


CALL_STAGES = {
    "url request": at_url_request,
    "url check": at_url_check,
    "download open": at_download_open,
    "body": at_body,
    "verify": at_verify,
    "commit": at_commit,
    "sidecars": at_sidecars,
}


@pytest.mark.parametrize("stage", list(CALL_STAGES))
async def test_an_unexpected_exception_in_a_call_fails_that_call_only(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    fake = await make_fake(small())
    bad = picked_ids(fake)[0]
    CALL_STAGES[stage](monkeypatch, bad)
    metrics = tmp_path / "osvi.prom"
    result = await run_fake(fake, tmp_path / "out", metrics, with_metadata=True)
    assert result.exit_code == 1, result.error
    assert told(tmp_path / "out", metrics) == (1, 1)
    assert not last_success_in(metrics)
    entry = {c["call_id"]: c for c in manifest_of(tmp_path / "out")["calls"]}[bad]
    assert entry["status"] == "failed"
    assert entry["error"]["kind"] == "internal_error"
    assert re.match(r"internal error: \w+: ", entry["error"]["message"])
    assert_byte_exact(fake, tmp_path / "out", [c for c in picked_ids(fake) if c != bad])


def in_the_input_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.engine import inputs

    original = inputs._item

    def item(source: str, number: int, value: str) -> Any:
        if number == 4:
            raise RuntimeError("a reader's surprise")
        return original(source, number, value)

    monkeypatch.setattr(inputs, "_item", item)


def in_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Pipeline._skip
    calls = 0

    def skip(self: Pipeline, item: Any, previous: Any, repeat: bool) -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise AttributeError("a pipeline bug")
        return original(self, item, previous, repeat)

    monkeypatch.setattr(Pipeline, "_skip", skip)


def in_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    from archiver.engine import outputs

    def broken(*_args: Any) -> Path:
        raise TypeError("a manifest bug")

    monkeypatch.setattr(outputs, "write_manifest", broken)


RUN_STAGES = {
    "input reader": in_the_input_reader,
    "pipeline": in_the_pipeline,
    "manifest writing": in_the_manifest,
}


@pytest.mark.parametrize("stage", list(RUN_STAGES))
async def test_an_unexpected_exception_outside_any_call_is_exit_70_everywhere(
    make_fake: FakeFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stage: str,
) -> None:
    fake = await make_fake(small())
    RUN_STAGES[stage](monkeypatch)
    metrics = tmp_path / "osvi.prom"
    with caplog.at_level(logging.INFO, logger="archiver"):
        result = await run_fake(fake, tmp_path / "out", metrics)
    assert result.exit_code == 70
    assert told(tmp_path / "out", metrics) == (70, 70)
    assert not last_success_in(metrics)
    assert "internal error" in str(result.error)
    fatal = [r for r in caplog.records if getattr(r, "event", None) == "fatal"]
    assert len(fatal) == 1
    assert getattr(fatal[0], "exit_code", None) == 70
    assert list((tmp_path / "out").rglob("*.part")) == []


async def test_the_last_success_moves_only_on_a_real_zero(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    metrics = tmp_path / "osvi.prom"
    good = await make_fake(small())
    assert (await run_fake(good, tmp_path / "out", metrics)).exit_code == 0
    assert told(tmp_path / "out", metrics) == (0, 0)
    first = re.search(r"last_success_timestamp_seconds\{[^}]*\} (\S+)", metrics.read_text())
    assert first
    for path in (tmp_path / "out" / "runs").glob("*.json"):
        path.unlink()
    faults = {FaultKind.REC_500: Fault(rate=1.0, times=None)}
    bad = await make_fake(small(faults=faults))
    assert (await run_fake(bad, tmp_path / "out", metrics, force=True, max_attempts=1)).exit_code
    second = re.search(r"last_success_timestamp_seconds\{[^}]*\} (\S+)", metrics.read_text())
    assert second
    assert second[1] == first[1]


async def test_a_signal_while_the_outputs_are_written_is_not_lost(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.engine import outputs
    from archiver.manifest import writer as manifest

    fake = await make_fake(small())
    original = manifest.write_run_report
    sent = False

    def report_then_signal(*args: Any) -> Path | str:
        nonlocal sent
        if not sent:
            sent = True
            os.kill(os.getpid(), signal.SIGTERM)  # mid-way through the outputs
        return original(*args)

    monkeypatch.setattr(outputs, "write_run_report", report_then_signal)
    metrics = tmp_path / "osvi.prom"
    result = await run_fake(fake, tmp_path / "out", metrics)
    assert result.exit_code == 143
    assert told(tmp_path / "out", metrics) == (143, 143)
    assert not last_success_in(metrics)


# one outcome is durable before it is counted


async def test_an_outcome_is_committed_before_it_is_counted(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = await make_fake(small())
    out = tmp_path / "out"
    unseen: list[str] = []
    original = Counts.add

    def add(
        self: Counts, status: str, call_id: str, size: int | None, kind: str | None = None
    ) -> None:
        if status != "already_archived":
            reader = sqlite3.connect(f"file:{out}/.osvi-archiver/state.sqlite3?mode=ro", uri=True)
            row = reader.execute("SELECT status FROM calls WHERE call_id = ?", (call_id,))
            if row.fetchone() != (status,):
                unseen.append(call_id)
            reader.close()
        original(self, status, call_id, size, kind)

    monkeypatch.setattr(Counts, "add", add)
    result = await run_fake(fake, out, tmp_path / "m.prom")
    assert result.exit_code == 0
    assert unseen == []


# signals, pipes, empty input: real processes


def slow(calls: int) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=192 * 1024, size_max=256 * 1024, bandwidth=256 * 1024)


async def test_sighup_stops_the_run_cleanly_like_sigterm(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """An ssh session dropped during a backfill: stop, clean up, tell, exit 129."""
    fake = await make_fake(slow(16))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    metrics = tmp_path / "osvi.prom"
    out = tmp_path / "out"
    run = await start_osvi(
        "run", "--out", str(out), "--metrics-file", str(metrics), "--concurrency", "4",
        env=env_for(fake), stdin=ids,
    )  # fmt: skip
    for _ in range(200):
        if list(out.glob("*.part")):
            break
        await asyncio.sleep(0.05)
    run.send_signal(signal.SIGHUP)
    done = await finish(run)
    assert done.code == 129, done.stderr
    assert "interrupted by SIGHUP" in done.stderr
    assert told(out, metrics) == (129, 129)
    assert list(out.rglob("*.part")) == []
    again = await osvi("run", "--out", str(out), env=env_for(fake), stdin=ids)
    assert again.code == 0, again.stderr


@pytest.mark.parametrize("command", ["run --dry-run", "verify --json"])
async def test_a_closed_pipe_on_stdout_ends_quietly(
    make_fake: FakeFactory, tmp_path: Path, command: str
) -> None:
    fake = await make_fake(small(40))
    ids = "\n".join(c.call_id for c in fake.calls)
    out = tmp_path / "out"
    assert (await osvi("run", "--out", str(out), env=env_for(fake), stdin=ids.encode())).code == 0
    (tmp_path / "ids.txt").write_text(ids * 50)
    shell = (
        f"{sys.executable} -m archiver {command} --out {out} "
        + (str(tmp_path / "ids.txt") if "run" in command else "")
        + " | head -1; exit ${PIPESTATUS[0]}"
    )
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", shell, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert len(stdout.splitlines()) == 1
    assert b"Traceback" not in stderr, stderr
    assert b"BrokenPipe" not in stderr, stderr
    assert process.returncode == 0


async def test_an_empty_input_says_so_and_exits_0(make_fake: FakeFactory, tmp_path: Path) -> None:
    fake = await make_fake(small())
    done = await osvi("run", "--out", str(tmp_path), "-", env=env_for(fake), stdin=b"")
    assert done.code == 0, done.stderr
    assert "held no call ids" in done.stderr


async def test_a_token_of_two_lines_is_a_usage_error_not_a_traceback(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    env = env_for(fake, OSVI_API_TOKEN=f"{fake.token}\nsecond-line-0002", OSVI_LOG_FORMAT="json")
    done = await osvi("run", "--out", str(tmp_path), env=env, stdin=b"")
    assert done.code == 2
    [line] = done.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "fatal"
    assert "line break" in event["message"]
    assert fake.token not in done.stderr


async def test_escapes_from_a_server_never_reach_the_terminal(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.API_ECHO: Fault(rate=1.0, times=None)}
    fake = await make_fake(small(faults=faults))
    ids = "\n".join(picked_ids(fake)).encode()
    done = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids)
    assert done.code == 1
    assert "\x1b" not in done.stderr
    assert "\x07" not in done.stderr
    assert "\\x1b[31m" in done.stderr
    assert fake.token not in done.stderr


# the archive folder after a cut, or with a trap in it


async def test_temp_files_a_power_cut_left_are_removed_at_the_start(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    stale = [
        out / ".manifest.json.x1y2z3.tmp",
        out / "runs" / ".20260101T000000.000Z-aaaaaa.json.q9.tmp",
    ]
    others = [
        out / ".manifest.shard-0-of-2.json.k.tmp",
        out / "runs" / ".r.shard-0-of-2.json.k.tmp",
    ]
    for path in stale + others:
        path.write_text("{")
    metrics = tmp_path / "osvi.prom"
    old_metrics_temp = tmp_path / ".osvi.prom.abc.tmp"
    old_metrics_temp.write_text("# half")
    os.utime(old_metrics_temp, (1, 1))
    result = await run_fake(fake, out, metrics)
    assert result.exit_code == 0
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)  # a shard's own: not this run's to remove
    assert not old_metrics_temp.exists()


async def test_the_manifests_temp_files_are_looked_for_in_its_parts_folder_only(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    out = tmp_path / "out"
    assert (await run_fake(fake, out, tmp_path / "m.prom")).exit_code == 0
    stale = [
        out / "manifest" / ".manifest.json.a1.tmp",
        out / "manifest" / ".part-000000.json.b2.tmp",
    ]
    for path in stale:
        path.write_text("{")
    kept = out / "manifest.shard-0-of-2" / ".part-000000.json.c3.tmp"  # a shard's
    kept.parent.mkdir()
    kept.write_text("{")
    listed: list[Path] = []
    real_glob = Path.glob

    def watched(self: Path, pattern: str) -> object:
        listed.append(self)
        return real_glob(self, pattern)

    with patch.object(Path, "glob", watched):
        assert (await run_fake(fake, out, tmp_path / "m.prom")).exit_code == 0
    assert not any(path.exists() for path in stale)
    assert kept.exists()
    assert out not in listed  # the archive's root (every recording) is never listed
    assert not [p for p in out.glob(".manifest.json.*.tmp")]


async def test_a_symlink_planted_at_a_part_path_is_not_written_through(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small())
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.conf"
    victim.write_text("keep me\n")
    target = picked_ids(fake)[0]
    (out / f"{target}.mp4.part").symlink_to(victim)
    result = await run_fake(fake, out, tmp_path / "m.prom")
    assert result.exit_code == 0
    assert victim.read_text() == "keep me\n"
    assert_byte_exact(fake, out, picked_ids(fake))


@pytest.mark.parametrize("folder", ["runs", "manifest"])
async def test_a_linked_runs_or_manifest_folder_is_refused_before_anything(
    make_fake: FakeFactory, tmp_path: Path, folder: str
) -> None:
    """Reports written and files pruned wherever the link points: refused at once, exit 4."""
    fake = await make_fake(small())
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "20260101T000000.000Z-abcdef.json").write_text("not ours\n")
    (out / folder).symlink_to(elsewhere)
    done = await osvi(
        "run", "--out", str(out), "--keep-run-reports", "1", "-", env=env_for(fake),
        stdin="\n".join(picked_ids(fake)).encode(),
    )  # fmt: skip
    assert done.code == 4, done.stderr
    assert f"{out / folder} is a symbolic link" in done.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["20260101T000000.000Z-abcdef.json"]
    # nothing was attempted (but the new archive's token check: one listing item)
    assert sum(fake.stats.requests.values()) == fake.stats.requests["calls"] <= 1


@pytest.mark.parametrize(("blocked", "log_format"), [("runs", "text"), ("manifest.json", "json")])
async def test_an_output_that_cannot_be_written_is_said_once(
    make_fake: FakeFactory, tmp_path: Path, blocked: str, log_format: str
) -> None:
    """It ends the run (exit 4): the `fatal` line says it, once; the outputs written again
    with the new code do not say it again, nor does a line of their own before the fatal."""
    fake = await make_fake(small())
    out = tmp_path / "out"
    out.mkdir()
    (out / blocked).mkdir() if blocked.endswith(".json") else (out / blocked).write_text("")
    done = await osvi(
        "run", "--out", str(out), "--log-format", log_format, "-", env=env_for(fake),
        stdin="\n".join(picked_ids(fake)).encode(),
    )  # fmt: skip
    assert done.code == 4, done.stderr
    said = [line for line in done.stderr.splitlines() if f"{out / blocked}" in line]
    if log_format == "json":
        events = [json.loads(line)["event"] for line in said]
        assert events.count("fatal") == 1
        assert "not_written" not in events
    else:
        errors = [line for line in said if " ERROR " in line]
        assert len(errors) == 1, done.stderr
        assert f"cannot write {out / blocked}" in errors[0]


async def test_a_file_put_in_place_as_the_run_is_cancelled_is_recorded(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename runs in a thread, which a cancellation does not stop: a SIGTERM during the
    commit must not leave a final file the state does not know."""
    import time as clock

    from archiver.archive import storage

    fake = await make_fake(small(4))
    target = picked_ids(fake)[0]
    original = storage.fsync_folder

    def fsync_then_signal(folder: Path) -> None:
        if (folder / f"{target}.mp4").exists() and not getattr(fsync_then_signal, "sent", 0):
            fsync_then_signal.sent = 1  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGTERM)  # after the rename, before its fsync ends
            clock.sleep(0.3)
        original(folder)

    monkeypatch.setattr(storage, "fsync_folder", fsync_then_signal)
    out = tmp_path / "out"
    result = await run_fake(fake, out, tmp_path / "m.prom")
    assert result.exit_code == 143
    assert (out / f"{target}.mp4").is_file()
    entry = {c["call_id"]: c for c in manifest_of(out)["calls"]}[target]
    assert entry["status"] == "archived"
    assert result.counts.archived >= 1


async def test_a_second_signal_while_the_outputs_are_written_waits_for_them(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`os._exit` then would leave a report and metrics that say another exit code."""
    from archiver.engine import outputs
    from archiver.manifest import writer as manifest

    fake = await make_fake(small())
    original = manifest.write_run_report
    sent = 0

    def report_then_two_signals(*args: Any) -> Path | str:
        nonlocal sent
        if not sent:
            sent = 2
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # taken first (pending together, SIGINT would be delivered first)
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args)

    monkeypatch.setattr(outputs, "write_run_report", report_then_two_signals)
    metrics = tmp_path / "osvi.prom"
    result = await run_fake(fake, tmp_path / "out", metrics)
    assert result.exit_code == 143
    assert told(tmp_path / "out", metrics) == (143, 143)


async def test_sighup_ignored_by_nohup_stays_ignored(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(slow(8))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    out = tmp_path / "out"
    process = await asyncio.create_subprocess_exec(
        "nohup", sys.executable, "-m", "archiver", "run", "--out", str(out),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OSVI_")}, **env_for(fake)},
        cwd=tmp_path,
    )  # fmt: skip
    assert process.stdin is not None
    process.stdin.write(ids)
    process.stdin.close()
    for _ in range(200):
        if list(out.glob("*.part")):
            break
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGHUP)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert b"SIGHUP" not in stderr


async def test_a_closed_stderr_never_changes_the_exit_code(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.REC_500: Fault(rate=1.0, times=None)}
    fake = await make_fake(small(faults=faults))
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(picked_ids(fake)))
    out = tmp_path / "out"
    shell = (
        f"{sys.executable} -m archiver run --out {out} --max-attempts 1 {ids} 2>&1 | head -c 1; "
        "exit ${PIPESTATUS[0]}"
    )
    env = {**os.environ, **env_for(fake)}
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", shell, stdout=asyncio.subprocess.PIPE, env=env
    )
    await asyncio.wait_for(process.communicate(), 60)
    [report] = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert process.returncode == report["exit_code"] == 1


async def test_quiet_prints_nothing_on_success_and_only_why_otherwise(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """`-q` for cron: a run that exits 0 prints nothing at all; one that exits 1 prints the
    failed calls with their kinds, the run report and the exit code, not the summary."""
    fake = await make_fake(small(6))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    done = await osvi("run", "-q", "--out", str(tmp_path / "a"), env=env_for(fake), stdin=ids)
    assert done.code == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == ""
    broken = await make_fake(small(6, faults={FaultKind.REC_500: Fault(rate=1.0, times=100)}))
    ids = "\n".join(c.call_id for c in broken.calls if c.has_recording).encode()
    failed = await osvi(
        "run", "-q", "--max-attempts", "1", "--out", str(tmp_path / "b"),
        env=env_for(broken), stdin=ids,
    )  # fmt: skip
    assert failed.code == 1, failed.stderr
    lines = failed.stderr.splitlines()
    assert "failed calls" in lines  # after each failure's error line
    assert all(" ERROR " in line for line in lines[: lines.index("failed calls")])
    assert any("server_error" in line for line in lines), failed.stderr
    assert lines[-1] == "exit code         1"
    assert "archived" not in failed.stderr  # not the summary


async def test_log_file_holds_the_log_and_the_summary_while_stderr_keeps_the_summary(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(6))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    log_file = tmp_path / "sync.log"
    done = await osvi(
        "run", "--out", str(tmp_path / "a"), "--log-file", str(log_file), "--progress", "never",
        env=env_for(fake), stdin=ids,
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert done.stderr.startswith("── osvi-archiver summary ──"), done.stderr
    logged = log_file.read_text()
    assert " INFO " in logged  # the run's records
    assert "── osvi-archiver summary ──" in logged
    assert fake.token not in logged
    refused = await osvi(
        "run", "--out", str(tmp_path / "a"), "--log-file", str(tmp_path / "no" / "x.log"),
        env=env_for(fake), stdin=ids,
    )  # fmt: skip
    assert refused.code == 2
    assert "cannot open it for appending" in refused.stderr
    assert "given by the flag --log-file" in refused.stderr


async def test_a_fatal_error_is_in_the_log_file_too(make_fake: FakeFactory, tmp_path: Path) -> None:
    """--log-file holds how a command ended, also when it ended before its summary."""
    fake = await make_fake(small(4))
    log_file = tmp_path / "sync.log"
    env = {**env_for(fake), "OSVI_API_TOKEN": "wrong-token-0000"}
    done = await osvi("run", "--out", str(tmp_path / "a"), "--log-file", str(log_file), "-",
                      env=env, stdin=b"")  # fmt: skip
    assert done.code == 3, done.stderr
    logged = log_file.read_text()
    assert "ERROR   osvi-archiver: error: the OSVI API rejected the token" in logged
    assert "wrong-token-0000" not in logged
