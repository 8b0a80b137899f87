"""The scale scenarios of issue 12: millions of ids in, archives of millions of calls.

The large archives are seeded straight into the state (bench/seed.py) and kept in
bench/out/seeds/ between runs of `make bench` (seeding ten million calls takes minutes):
each nightly adds its ~700 calls to them, which changes nothing of what is measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import (
    archiver_argv,
    calls_for,
    env_for,
    fake_server,
    recorded_ids,
    timed,
)
from bench.seed import seed, seeded_ids

Row = dict[str, Any]
SEEDS = Path(__file__).parent / "out" / "seeds"
NIGHTLY = 700


def _seeded(name: str, count: int, *, files: bool = False) -> Path:
    """A seeded archive of `count` calls, made once and kept (its marker says it is whole)."""
    folder = SEEDS / name
    marker = folder / ".seeded"
    if not marker.is_file():
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir(parents=True)
        seed(folder, count, files=files)
        marker.write_text(str(count))
    return folder


def _row(scenario: str, figure: str, value: Any, reference: str, ratio: Any, target: str,
         ok: bool | None, code: int | None) -> Row:  # fmt: skip
    return {"scenario": scenario, "figure": figure, "value": value, "reference": reference,
            "ratio": ratio, "target": target, "ok": ok, "exit": code}  # fmt: skip


def _report(out: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(sorted((out / "runs").glob("*.json"))[-1].read_text())
    return report


def input_stage(scale: float) -> list[Row]:
    """1,000,000 ids, `--shard 0/1000`: all but ~1,000 settled without a worker."""
    count = max(100_000, int(1_000_000 * scale))
    with fake_server("--calls", "10") as fake, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        path.write_text("".join(f"{uuid.uuid4()}\n" for _ in range(count)))
        options = ("--shard", "0/1000", "--max-rps", "100000", "--concurrency", "32", str(path))
        run = timed(archiver_argv(Path(tmp) / "out", *options), env_for(fake))
    full = count >= 1_000_000  # a smaller run (--quick) pays the same start-up: not judged
    return [
        _row(f"input: {count:,} ids, --shard 0/1000", "seconds", round(run.seconds, 1),
             f"{count / run.seconds:,.0f} ids/s", None,
             "<= 10" if full else "<= 10 at 1M (not judged)",
             run.seconds <= 10 if full else None, run.code),
    ]  # fmt: skip


def rerun(scale: float) -> list[Row]:
    """Reruns over calls all archived and still on disk: 100,000 ids, then 1,000,000."""
    big = max(200_000, int(1_000_000 * scale))
    archive = _seeded(f"archived-{big}", big, files=True)
    ids = seeded_ids(big)
    rows: list[Row] = []
    with fake_server("--calls", "10") as fake, tempfile.TemporaryDirectory() as tmp:
        for count in (100_000, big):
            path = Path(tmp) / f"ids-{count}.txt"
            path.write_text("\n".join(ids[:count]) + "\n")
            run = timed(archiver_argv(archive, "--max-rps", "100000", str(path)), env_for(fake))
            rate = count / run.seconds
            ok = rate >= 50_000 and (count < 1_000_000 or run.seconds <= 20)
            rows.append(
                _row(f"rerun: {count:,} ids all archived", "ids/s", round(rate),
                     f"{run.seconds:.1f} s", None, ">= 50,000 (1M in <= 20 s)", ok, run.code)
            )  # fmt: skip
    return rows


def nightly(scale: float) -> list[Row]:
    """~700 new calls into an empty archive, then into archives of 1M and 10M calls: three
    rounds alternating with a run into an empty folder (so a drift of the machine falls on
    both), after one run into the large archive that is not counted (the first run after
    seeding reads a cold page cache: reported beside the median)."""
    sizes = [max(100_000, int(1_000_000 * scale)), max(1_000_000, int(10_000_000 * scale))]
    rounds = 3
    rows: list[Row] = []
    with (
        fake_server("--calls", str(calls_for(NIGHTLY)), "--size-min", "4KiB",
                    "--size-max", "4KiB") as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):  # fmt: skip
        path = Path(tmp) / "nightly.txt"
        path.write_text("\n".join(recorded_ids(NIGHTLY, calls=calls_for(NIGHTLY))) + "\n")
        options = ("--force", "--concurrency", "32", "--max-rps", "100000", str(path))
        for size in sizes:
            archive = _seeded(f"calls-{size}", size)
            cold = timed(archiver_argv(archive, *options), env_for(fake))
            runs, empties, lags = [], [], []
            for n in range(rounds):
                empty = timed(archiver_argv(Path(tmp) / f"empty-{size}-{n}", *options),
                              env_for(fake))  # fmt: skip
                run = timed(archiver_argv(archive, *options), env_for(fake))
                runs.append(run.seconds)
                empties.append(empty.seconds)
                lags.append(_report(archive)["max_loop_lag_ms"])
            seconds, base = sorted(runs)[rounds // 2], sorted(empties)[rounds // 2]
            ratio, lag = seconds / base, max(lags)
            rows += [
                _row(f"nightly: {NIGHTLY} new calls into {size:,}", "seconds (median of 3)",
                     round(seconds, 2), f"empty {base:.2f}", round(ratio, 2), "<= 1.2 of empty",
                     ratio <= 1.2, run.code),
                _row(f"nightly into {size:,}, first run after seeding", "seconds",
                     round(cold.seconds, 2), f"empty {base:.2f}", round(cold.seconds / base, 2),
                     "report (cold cache)", None, cold.code),
                _row(f"nightly into {size:,}", "max loop lag ms", lag, "", None, "<= 100",
                     lag <= 100, run.code),
            ]  # fmt: skip
    return rows


def stall(scale: float) -> list[Row]:
    """A run whose manifest write is large (a 600k-call archive's first write: every part),
    the manifest written every second (bench/manifest_often.py): the loop's longest stall;
    then the same, stopped by SIGTERM while that write goes on."""
    size = max(100_000, int(600_000 * scale))
    rows: list[Row] = []
    knobs = ("--size-min", "64KiB", "--size-max", "64KiB", "--bandwidth", "64KiB")
    with fake_server("--calls", "200", *knobs) as fake, tempfile.TemporaryDirectory() as tmp:
        ids = Path(tmp) / "ids.txt"
        ids.write_text("\n".join(recorded_ids(60, calls=200)) + "\n")
        options = ("--concurrency", "8", "--max-rps", "100000", str(ids))
        out = Path(tmp) / "lag"
        seed(out, size, manifest=False)
        run = timed(archiver_argv(out, *options, module="bench.manifest_often"), env_for(fake))
        lag = _report(out)["max_loop_lag_ms"]
        rows.append(
            _row(f"stall: manifest of {size:,} calls written during a run", "max loop lag ms",
                 lag, "", None, "<= 100", lag <= 100, run.code)
        )  # fmt: skip
        out = Path(tmp) / "term"
        seed(out, size, manifest=False)
        argv = archiver_argv(out, *options, module="bench.manifest_often")
        process = subprocess.Popen(argv, env={**os.environ, **env_for(fake)})
        time.sleep(2.5)  # the first, large write is under way
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        answered = time.monotonic() - signalled
        rows.append(
            _row("stall: SIGTERM during that write", "seconds to exit", round(answered, 2),
                 f"exit {code}", None, "<= 5", answered <= 5 and code == 143, code)
            | {"expected_exit": 143}
        )  # fmt: skip
    return rows


def memory(scale: float) -> list[Row]:
    """1,000,000 input ids into an archive of 10,000,000 calls: peak RSS."""
    size = max(1_000_000, int(10_000_000 * scale))
    count = max(100_000, int(1_000_000 * scale))
    archive = _seeded(f"calls-{size}", size)
    with fake_server("--calls", "10") as fake, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        path.write_text("".join(f"{uuid.uuid4()}\n" for _ in range(count)))
        options = ("--shard", "0/1000", "--max-rps", "100000", "--concurrency", "32", str(path))
        run = timed(archiver_argv(archive, *options), env_for(fake))
    mib = run.peak_rss_kb / 1024
    return [
        _row(f"memory: {count:,} ids into {size:,} calls", "peak RSS MiB", round(mib, 1), "",
             None, "< 150", mib < 150, run.code),
    ]  # fmt: skip


ALL = {
    "scale-input": input_stage,
    "scale-rerun": rerun,
    "scale-nightly": nightly,
    "scale-stall": stall,
    "scale-memory": memory,
}
