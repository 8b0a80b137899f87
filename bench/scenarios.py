"""The scenarios of issue 6 / SPEC §11. Each returns rows: one figure per row, with its target."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.checking import CHECK
from bench.harness import (
    Timed,
    archiver_argv,
    calls_for,
    env_for,
    fake_server,
    fake_stats,
    mint_url,
    recorded_ids,
    timed,
)
from bench.scale import ALL as SCALE
from bench.stores import STORES

Row = dict[str, Any]
KIB, MIB = 1024, 1024 * 1024


def _ids_file(folder: Path, ids: list[str]) -> Path:
    path = folder / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def _curl(url: str, out: Path) -> list[str]:
    return ["curl", "-sS", "--fail", "-o", str(out), url]


API_LATENCY, FIRST_BYTE, CALL_SIZE, STREAM_RATE = 0.02, 0.03, 256 * KIB, 1 * MIB


def latency_bound(scale: float) -> list[Row]:
    """API 20 ms, first byte 30 ms, 256 KiB calls at 1 MiB/s per stream (§11). The ideal is
    the configured cost of one call (the URL, the first byte, the body at the stream's rate:
    0.30 s) times the concurrency: no sample of curl, which moved it ±15% between runs."""
    count = max(200, int(2000 * scale))
    knobs = [
        "--api-latency",
        str(API_LATENCY),
        "--download-latency",
        str(FIRST_BYTE),
        "--bandwidth",
        str(STREAM_RATE),
        "--size-min",
        str(CALL_SIZE),
        "--size-max",
        str(CALL_SIZE),
    ]
    rows: list[Row] = []
    with (
        fake_server("--calls", str(calls_for(count)), *knobs) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        ids = recorded_ids(count, calls=calls_for(count))
        per_call = API_LATENCY + FIRST_BYTE + CALL_SIZE / STREAM_RATE
        for concurrency in (32, 64):
            out = folder / f"c{concurrency}"
            run = timed(
                archiver_argv(
                    out,
                    "--concurrency",
                    str(concurrency),
                    "--max-rps",
                    "10000",
                    str(_ids_file(folder, ids)),
                ),
                env_for(fake),
            )
            ideal = concurrency / per_call
            rate = count / run.seconds
            rows.append(
                {
                    "scenario": f"latency-bound c={concurrency}",
                    "figure": "calls/s",
                    "value": round(rate, 1),
                    "reference": f"ideal {ideal:.1f}",
                    "ratio": round(rate / ideal, 2),
                    "target": ">= 0.9",
                    "ok": rate / ideal >= 0.9,
                    "exit": run.code,
                }
            )
        rows += _peers(fake, folder, ids, rows)
    return rows


def _peers(fake: Any, folder: Path, ids: list[str], ours: list[Row]) -> list[Row]:
    """The same job the usual ways: xargs + curl (URL then file), and aria2c over minted URLs."""
    ours_seconds = len(ids) / ours[0]["value"]
    script = folder / "fetch.sh"  # what a person would write: URL with curl, then the file
    script.write_text(
        'url=$(curl -sS -H "API-Token: $OSVI_API_TOKEN" "$OSVI_BASE_URL/v1/call/$2/recording" '
        '| sed -E \'s/.*"recording_url": *"([^"]*)".*/\\1/\')\n'
        'curl -sS --fail -o "$1/$2.mp4" "$url"\n'
    )
    out = folder / "xargs"
    out.mkdir()
    argv = ["sh", "-c", f"xargs -P 32 -n 1 sh {script} {out} < {folder / 'ids.txt'}"]
    shell = timed(argv, env_for(fake))
    fetched = len(list(out.glob("*.mp4")))
    rows: list[Row] = [
        {
            "scenario": "peer: xargs -P 32 curl (URL, then file)",
            "figure": "seconds",
            "value": round(shell.seconds, 1),
            "reference": f"ours {ours_seconds:.1f}",
            "ratio": round(shell.seconds / ours_seconds, 2),
            "target": f"report ({fetched}/{len(ids)} fetched)",
            "ok": None,
            "exit": shell.code,
        }
    ]
    if shutil.which("aria2c") is None:
        rows.append(
            {
                "scenario": "peer: aria2c -j 32",
                "figure": "skipped",
                "value": None,
                "reference": "install it: apt-get install aria2",
                "ratio": None,
                "target": "report",
                "ok": None,
                "exit": None,
            }
        )
        return rows
    urls = folder / "urls.txt"
    urls.write_text("".join(f"{mint_url(fake, i)}\n  out={i}.mp4\n" for i in ids))
    aria = timed(
        ["aria2c", "-q", "-j", "32", "-x", "1", "-d", str(folder / "aria"), "-i", str(urls)]
    )
    rows.append(
        {
            "scenario": "peer: aria2c -j 32 (pre-minted URLs)",
            "figure": "seconds",
            "value": round(aria.seconds, 1),
            "reference": f"ours {ours_seconds:.1f}",
            "ratio": round(aria.seconds / ours_seconds, 2),
            "target": "report",
            "ok": None,
            "exit": aria.code,
        }
    )
    return rows


def bandwidth_bound(scale: float) -> list[Row]:
    """Large files over loopback, no latency (issue 23): the tool against the floor reference
    (bench/floor.py: the same guarantees, nothing else) and against curl, in paired,
    interleaved repetitions (ours, floor, curl, ours, ...; the median of each), every output
    dropped outside the timed part (sync, remove, a pause) so no row pays for another's."""
    reps = 3 if scale >= 1 else 1
    count = max(8, int(64 * scale))
    rows: list[Row] = []
    for label, size, calls, concurrency in (
        ("1 GiB x 1", "1GiB", 1, 1),
        (f"16 MiB x {count}", "16MiB", count, 1),
        (f"16 MiB x {count}, c=8", "16MiB", count, 8),
    ):
        with (
            fake_server(
                "--calls", str(calls_for(calls)), "--size-min", size, "--size-max", size
            ) as fake,
            tempfile.TemporaryDirectory() as tmp,
        ):
            folder = Path(tmp)
            ids = recorded_ids(calls, calls=calls_for(calls))
            for call_id in ids:  # the fake hashes each body (its ETag) on first use: not timed
                subprocess.run(
                    ["curl", "-sS", "-r", "0-0", "-o", "/dev/null", mint_url(fake, call_id)],
                    check=True,
                )
            ids_file = _ids_file(folder, ids)
            runs: dict[str, list[Timed]] = {"ours": [], "floor": [], "curl": []}
            for rep in range(reps):
                for name in runs:
                    out = folder / f"{name}-{rep}"
                    runs[name].append(_large_run(name, fake, ids, ids_file, out, concurrency))
                    _drop(out)
            total = calls * _size_bytes(size)
            rows += _large_rows(label, total, {k: _median(v) for k, v in runs.items()})
            if concurrency == 1:
                piped = _pipeline(fake, folder, ids)
                _drop(folder / "pipeline")
                ours = _median(runs["ours"])
                rows.append(
                    {
                        "scenario": f"peer: curl + sha256sum + md5sum + sync, {label}",
                        "figure": "MiB/s",
                        "value": round(total / MIB / piped.seconds, 1),
                        "reference": f"ours {total / MIB / ours.seconds:.1f}",
                        "ratio": round(piped.seconds / ours.seconds, 2),
                        "target": "report (ratio: ours/peer)",
                        "ok": None,
                        "exit": piped.code,
                    }
                )
    return rows


def start_up(scale: float) -> list[Row]:
    """Issue 23: the process time of the commands a person or a monitor runs often and that
    do no archiving (`--help`, `status`): the median of 7 runs each."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in (
            ("--help", ["--help"]),
            ("status of an empty folder", ["status", "--out", tmp]),
        ):
            runs = [timed([sys.executable, "-m", "archiver", *argv]) for _ in range(7)]
            best = sorted(runs, key=lambda run: run.cpu)[len(runs) // 2]
            rows.append(
                {
                    "scenario": f"start-up: {label}",
                    "figure": "process s",
                    "value": round(best.cpu, 3),
                    "reference": "",
                    "ratio": None,
                    "target": "<= 0.25",
                    "ok": best.cpu <= 0.25,
                    "exit": best.code,
                }
            )
    return rows


def large_memory(scale: float) -> list[Row]:
    """Issue 23: a folder run's peak RSS with 16 MiB files at --concurrency 32 (each download's
    lanes hold at most 8 MiB; malloc reuses the buffers: heap.py)."""
    count = max(32, int(64 * scale))
    with (
        fake_server(
            "--calls", str(calls_for(count)), "--size-min", "16MiB", "--size-max", "16MiB"
        ) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        ids = recorded_ids(count, calls=calls_for(count))
        run = _large_run("ours", fake, ids, _ids_file(folder, ids), folder / "ours", 32)
        mib = run.peak_rss_kb / 1024
        return [
            {
                "scenario": f"memory 16 MiB x {count}, c=32, folder",
                "figure": "peak RSS MiB",
                "value": round(mib, 1),
                "reference": f"{count * 16 / run.seconds:.0f} MiB/s",
                "ratio": None,
                "target": "< 300",
                "ok": mib < 300,
                "exit": run.code,
            }
        ]


def _large_run(
    name: str, fake: Any, ids: list[str], ids_file: Path, out: Path, concurrency: int
) -> Timed:
    if name == "ours":
        argv = archiver_argv(out, "--concurrency", str(concurrency), "--max-rps", "10000")
        return timed([*argv, str(ids_file)], env_for(fake))
    if name == "floor":
        argv = [sys.executable, "-m", "bench.floor", str(ids_file), str(out), str(concurrency)]
        return timed(argv, env_for(fake))
    out.mkdir()
    pairs = out / "pairs.txt"  # minted before the timed part, as the peers get them
    pairs.write_text("".join(f"{out / c}.mp4 {mint_url(fake, c)}\n" for c in ids))
    fetch = 'curl -sS --fail -o "$0" "$1"'
    return timed(["sh", "-c", f"xargs -P {concurrency} -n 2 sh -c '{fetch}' < {pairs}"])


def _large_rows(label: str, total: int, best: dict[str, Timed]) -> list[Row]:
    gib = total / 1024**3
    ours, floor, curl = best["ours"], best["floor"], best["curl"]
    mbs = {name: total / MIB / run.seconds for name, run in best.items()}
    return [
        {
            "scenario": f"bandwidth {label}",
            "figure": "MiB/s vs the floor",
            "value": round(mbs["ours"], 1),
            "reference": f"floor {mbs['floor']:.1f}, curl {mbs['curl']:.1f}",
            "ratio": round(mbs["ours"] / mbs["floor"], 2),
            "target": ">= 0.85",
            "ok": mbs["ours"] / mbs["floor"] >= 0.85,
            "exit": max(ours.code, floor.code, curl.code),
        },
        {
            "scenario": f"bandwidth {label}",
            "figure": "CPU s/GiB",
            "value": round(ours.cpu / gib, 2),
            "reference": f"floor {floor.cpu / gib:.2f}, curl {curl.cpu / gib:.2f}",
            "ratio": round(ours.cpu / max(floor.cpu, 1e-9), 2),
            "target": "<= 3.0",
            "ok": ours.cpu / gib <= 3.0,
            "exit": ours.code,
        },
        {
            "scenario": f"bandwidth {label}",
            "figure": "peak RSS MiB",
            "value": round(ours.peak_rss_kb / 1024, 1),
            "reference": f"floor {floor.peak_rss_kb / 1024:.1f}",
            "ratio": None,
            "target": "report",
            "ok": None,
            "exit": ours.code,
        },
    ]


def _median(runs: list[Timed]) -> Timed:
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def _size_bytes(size: str) -> int:
    number, unit = size[:-3], size[-3:]
    return int(number) * {"KiB": KIB, "MiB": MIB, "GiB": 1024 * MIB}[unit]


def _drop(out: Path) -> None:
    """What a run wrote, gone before the next is timed: written back, removed, settled."""
    subprocess.run(["sync"], check=False)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    time.sleep(1)


def _pipeline(fake: Any, folder: Path, ids: list[str]) -> Timed:
    """The same job by a shell pipeline paying for the same guarantees, one call at a time
    like ours at --concurrency 1: curl for a fresh URL, curl for the body, sha256sum, and
    `sync FILE` (an fsync) before the next."""
    out = folder / "pipeline"
    out.mkdir()
    script = folder / "pipeline.sh"
    script.write_text(
        "while read -r id; do\n"
        '  url=$(curl -sS -H "API-Token: $OSVI_API_TOKEN" "$OSVI_BASE_URL/v1/call/$id/recording" '
        '| sed -E \'s/.*"recording_url": *"([^"]*)".*/\\1/\')\n'
        '  curl -sS --fail -o "$1/$id.mp4" "$url" || exit 1\n'
        '  sha256sum "$1/$id.mp4" >> "$1/SHA256SUMS" && md5sum "$1/$id.mp4" > /dev/null\n'
        '  sync "$1/$id.mp4" "$1/SHA256SUMS"\n'
        "done\n"
    )
    ids_file = _ids_file(folder, ids)
    return timed(["sh", "-c", f"sh {script} {out} < {ids_file}"], env_for(fake))


def _overhead_run(fake: Any, folder: Path, out: Path, ids: list[str]) -> Timed:
    path = folder / f"ids-{len(ids)}.txt"
    path.write_text("\n".join(ids) + "\n")
    return timed(
        archiver_argv(out, "--concurrency", "32", "--max-rps", "100000", str(path)), env_for(fake)
    )


def overhead_bound(scale: float) -> list[Row]:
    """4 KiB calls, no latency: the bookkeeping cost per call; then growth of the archive."""
    small, big = max(1000, int(10_000 * scale)), max(5000, int(100_000 * scale))
    main = max(2000, int(20_000 * scale))
    total = main + small + big
    rows: list[Row] = []
    with (
        fake_server(
            "--calls", str(calls_for(total)), "--size-min", "4KiB", "--size-max", "4KiB"
        ) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        ids = recorded_ids(total, calls=calls_for(total))
        run = _overhead_run(fake, folder, folder / "overhead", ids[:main])
        rows.append(
            {
                "scenario": f"overhead {main} x 4 KiB",
                "figure": "calls/s",
                "value": round(main / run.seconds, 1),
                "reference": "",
                "ratio": None,
                "target": "report",
                "ok": None,
                "exit": run.code,
            }
        )
        rows.append(
            {
                "scenario": f"overhead {main} x 4 KiB",
                "figure": "CPU ms/call",
                "value": round(1000 * run.cpu / main, 2),
                "reference": "",
                "ratio": None,
                "target": "report",
                "ok": None,
                "exit": run.code,
            }
        )
        grow = folder / "growth"
        first = _overhead_run(fake, folder, grow, ids[main : main + small])
        second = _overhead_run(fake, folder, grow, ids[main + small :])
        per_first, per_second = first.seconds / small * 1000, second.seconds / big * 1000
        rows.append(
            {
                "scenario": f"growth {small} then {big} more",
                "figure": "s per 1000 calls",
                "value": round(per_second, 2),
                "reference": f"first {per_first:.2f}",
                "ratio": round(per_second / per_first, 2),
                "target": "<= 1.2 (flat)",
                "ok": per_second / per_first <= 1.2,
                "exit": second.code,
            }
        )
    return rows


def memory(scale: float) -> list[Row]:
    """Peak RSS reading 100k and 1M ids with --shard 0/1000 (the whole input is read)."""
    rows: list[Row] = []
    with fake_server("--calls", "10") as fake, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for count in (100_000, max(200_000, int(1_000_000 * scale))):
            path = folder / f"ids-{count}.txt"
            with path.open("w") as handle:
                for _ in range(count):
                    handle.write(f"{uuid.uuid4()}\n")
            run = timed(
                archiver_argv(
                    folder / f"m{count}",
                    "--shard",
                    "0/1000",
                    "--max-rps",
                    "100000",
                    "--concurrency",
                    "32",
                    str(path),
                ),
                env_for(fake),
            )
            mb = run.peak_rss_kb / 1024
            rows.append(
                {
                    "scenario": f"memory {count:,} ids --shard 0/1000",
                    "figure": "peak RSS MiB",
                    "value": round(mb, 1),
                    "reference": "",
                    "ratio": None,
                    "target": "< 150, flat",
                    "ok": mb < 150,
                    "exit": run.code,
                }
            )
    return rows


def throttled(scale: float) -> list[Row]:
    """An API that answers 429 above 50 requests/s, a tool allowed 200: adaptive concurrency
    (the tool as shipped) against the same run at a fixed rate (bench/fixed_rate.py)."""
    count = max(300, int(1500 * scale))
    limit = 50
    rows: list[Row] = []
    for variant, module in (("adaptive", "archiver"), ("fixed rate", "bench.fixed_rate")):
        with (
            fake_server(
                "--calls", str(calls_for(count)), "--size-min", "4KiB", "--size-max", "4KiB",
                "--api-rate-limit", str(limit),
            ) as fake,
            tempfile.TemporaryDirectory() as tmp,
        ):  # fmt: skip
            folder = Path(tmp)
            ids = recorded_ids(count, calls=calls_for(count))
            options = ("--concurrency", "32", "--max-rps", "200", "--max-attempts", "10")
            run = timed(
                archiver_argv(folder / "out", *options, str(_ids_file(folder, ids)), module=module),
                env_for(fake),
            )
            statuses = fake_stats(fake)["statuses"]
        asked = sum(n for key, n in statuses.items() if key.startswith("recording:"))
        refused = statuses.get("recording:429", 0)
        answered = asked - refused
        name = f"throttled at {limit} req/s: {variant}"
        rows += [
            {
                "scenario": name,
                "figure": "API answers/s",
                "value": round(answered / run.seconds, 1),
                "reference": f"limit {limit}",
                "ratio": round(answered / run.seconds / limit, 2),
                "target": "near the limit",
                "ok": None,
                "exit": run.code,
            },
            {
                "scenario": name,
                "figure": "429 share",
                "value": round(refused / asked, 3),
                "reference": f"{refused} of {asked}",
                "ratio": None,
                "target": "few (adaptive)",
                "ok": None,
                "exit": run.code,
            },
        ]
    return rows


def durability(scale: float) -> list[Row]:
    """The cost of fsyncing every commit of the state (synchronous=FULL, each outcome on disk
    before it is counted) against the same runs at synchronous=NORMAL (bench/normal_sync.py):
    4 KiB calls with no latency, where bookkeeping weighs most; runs alternate, so a drift of
    the machine's speed falls on both."""
    count = max(1000, int(5000 * scale))
    rounds = 3
    seconds: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    with (
        fake_server(
            "--calls", str(calls_for(count)), "--size-min", "4KiB", "--size-max", "4KiB"
        ) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):  # fmt: skip
        folder = Path(tmp)
        ids = _ids_file(folder, recorded_ids(count, calls=calls_for(count)))
        options = ("--concurrency", "32", "--max-rps", "100000", str(ids))
        for n in range(rounds):
            for variant, module in (("FULL", "archiver"), ("NORMAL", "bench.normal_sync")):
                out = folder / f"{variant}-{n}"
                run = timed(archiver_argv(out, *options, module=module), env_for(fake))
                seconds[variant].append(run.seconds)
    full, normal = sorted(seconds["FULL"])[rounds // 2], sorted(seconds["NORMAL"])[rounds // 2]
    return [
        {
            "scenario": f"durability {count} x 4 KiB, c=32: FULL",
            "figure": "calls/s",
            "value": round(count / full, 1),
            "reference": f"NORMAL {count / normal:.1f}",
            "ratio": round(normal / full, 2),
            "target": "report (cost of fsync)",
            "ok": None,
            "exit": run.code,
        }
    ]


ALL = {
    "latency": latency_bound,
    "bandwidth": bandwidth_bound,
    "large-memory": large_memory,
    "start-up": start_up,
    "overhead": overhead_bound,
    "memory": memory,
    "throttled": throttled,
    "durability": durability,
    **SCALE,
    **STORES,
    **CHECK,
}


def curl_version() -> str:
    first = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    return " ".join(first.stdout.split()[:2])
