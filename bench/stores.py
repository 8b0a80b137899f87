"""A bucket as the destination (issue 14): calls/s into a local S3 server beside the same job
into a folder, and the peak RSS of 100 MB recordings at --concurrency 32 into the bucket.

The S3 server is moto's, in a process of its own (its CPU and memory are not the tool's; it
keeps every object in memory, which the machine must hold: 40 of 100 MB here).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import archiver_argv, calls_for, env_for, fake_server, recorded_ids, timed

Row = dict[str, Any]
KEY, SECRET = "AKIABENCH0000000001", "bench-secret-not-a-real-one"  # moto checks no signature


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with one bucket, `bench`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"{endpoint}/bench", method="PUT"), timeout=1
                ).close()
                break
            except OSError:
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def store_env(endpoint: str, state_dir: Path) -> dict[str, str]:
    return {
        "OSVI_STORE_ENDPOINT": endpoint,
        "OSVI_STORE_ALLOW_HTTP": "true",
        "OSVI_STORE_REGION": "us-east-1",
        "OSVI_STATE_DIR": str(state_dir),
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }


def _row(scenario: str, figure: str, value: float, **more: Any) -> Row:
    return {
        "scenario": scenario,
        "figure": figure,
        "value": round(value, 1),
        "reference": "",
        "ratio": None,
        "target": "report",
        "ok": None,
        "exit": None,
        **more,
    }


def into_bucket(scale: float) -> list[Row]:
    count = max(300, int(2000 * scale))
    rows: list[Row] = []
    with (
        fake_server(
            "--calls", str(calls_for(count)), "--size-min", "64KiB", "--size-max", "64KiB"
        ) as fake,
        s3_server() as endpoint,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        ids = recorded_ids(count, calls=calls_for(count))
        path = folder / "ids.txt"
        path.write_text("\n".join(ids) + "\n")
        options = ("--concurrency", "32", "--max-rps", "100000", str(path))
        local = timed(archiver_argv(folder / "local", *options), env_for(fake))
        env = {**env_for(fake), **store_env(endpoint, folder / "state")}
        bucket = timed(archiver_argv("s3://bench/archive", *options), env)
        scenario = f"bucket {count} x 64 KiB, c=32"
        rows.append(_row(scenario, "folder calls/s", count / local.seconds, exit=local.code))
        rows.append(
            _row(
                scenario,
                "S3 calls/s",
                count / bucket.seconds,
                exit=bucket.code,
                reference=f"folder {count / local.seconds:.1f}",
                ratio=round(local.seconds / bucket.seconds, 2),
                target="report (moto is the bound)",
            )
        )
    return rows


def bucket_memory(scale: float) -> list[Row]:
    """100 MB recordings at --concurrency 32 into the bucket: the spool and the uploads'
    buffers bound the memory, not the recordings' size."""
    count = 40 if scale >= 1 else 34
    with (
        fake_server(
            "--calls", str(calls_for(count)), "--size-min", "100MB", "--size-max", "100MB"
        ) as fake,
        s3_server() as endpoint,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        ids = recorded_ids(count, calls=calls_for(count))
        path = folder / "ids.txt"
        path.write_text("\n".join(ids) + "\n")
        env = {**env_for(fake), **store_env(endpoint, folder / "state")}
        argv = archiver_argv(
            "s3://bench/big", "--concurrency", "32", "--max-rps", "100000", str(path)
        )
        run = timed(argv, env)
        mib = run.peak_rss_kb / 1024
        return [
            {
                "scenario": f"bucket {count} x 100 MB, c=32",
                "figure": "peak RSS MiB",
                "value": round(mib, 1),
                "reference": f"{count * 100 / run.seconds:.0f} MB/s",
                "ratio": None,
                "target": "< 300",
                "ok": mib < 300,
                "exit": run.code,
            }
        ]


STORES = {"bucket": into_bucket, "bucket-memory": bucket_memory}
assert os  # the environment is passed through by harness.timed
