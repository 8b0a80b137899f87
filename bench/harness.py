"""Processes for the benchmarks: the fake service, the tool, curl; timed with CPU and peak RSS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver.fake import FakeConfig, FakeOSVI

TIME = shutil.which("time") or "/usr/bin/time"


@dataclass
class Timed:
    seconds: float
    cpu: float  # user + system seconds of the process and its children
    peak_rss_kb: int
    code: int
    stderr: str


def timed(
    argv: Sequence[str], env: dict[str, str] | None = None, stdin: bytes | None = None
) -> Timed:
    """Run argv under GNU time: wall seconds, CPU seconds, peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.monotonic()
        done = subprocess.run(
            [TIME, "-f", "%U %S %M", "-o", report.name, *argv],
            input=stdin,
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        seconds = time.monotonic() - started
        user, system, rss = report.read().split()[-3:]
    return Timed(
        seconds, float(user) + float(system), int(rss), done.returncode, done.stderr.decode()
    )


@dataclass
class FakeProcess:
    base_url: str
    token: str
    process: subprocess.Popen[bytes]


@contextmanager
def fake_server(*args: str) -> Iterator[FakeProcess]:
    """`osvi-archiver fake-server ARGS` in its own process (its CPU is not the tool's)."""
    argv = [sys.executable, "-m", "archiver", "fake-server", "--port", "0", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    base_url = token = ""
    while not (base_url and token):
        line = process.stdout.readline().decode()
        if not line:
            raise RuntimeError("fake-server exited before it was ready")
        key, _, value = line.strip().partition(" ")
        if key == "base_url":
            base_url = value.strip()
        elif key == "token":
            token = value.strip()
    try:
        yield FakeProcess(base_url, token, process)
    finally:
        process.terminate()
        process.wait(10)


def recorded_ids(count: int, **config: object) -> list[str]:
    """The ids of the first `count` calls with a recording, as `fake-server` generates them
    with the same seed and knobs (generation is deterministic)."""
    calls = FakeOSVI(FakeConfig(**config)).calls  # type: ignore[arg-type]
    ids = [c.call_id for c in sorted(calls, key=lambda c: c.index) if c.has_recording]
    if len(ids) < count:
        raise ValueError(f"only {len(ids)} calls with a recording")
    return ids[:count]


def calls_for(count: int) -> int:
    """How many calls a fake needs for `count` of them to have a recording (about 75%)."""
    return int(count / 0.7) + 50


def mint_url(fake: FakeProcess, call_id: str) -> str:
    request = urllib.request.Request(
        f"{fake.base_url}/v1/call/{call_id}/recording", headers={"API-Token": fake.token}
    )
    with urllib.request.urlopen(request) as response:
        return str(json.load(response)["data"]["recording_url"])


def archiver_argv(out: Path | str, *options: str, module: str = "archiver") -> list[str]:
    return [
        sys.executable,
        "-m",
        module,
        "run",
        "--out",
        str(out),
        "-q",
        "--progress",
        "never",
        *options,
    ]


def fake_stats(fake: FakeProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{fake.base_url}/_fake/stats") as response:
        stats: dict[str, Any] = json.load(response)
    return stats


def env_for(fake: FakeProcess) -> dict[str, str]:
    return {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
