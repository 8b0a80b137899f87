"""`osvi-archiver demo`: the whole product against the embedded fake service, no account.

Starts the fake on loopback with faults on (connection resets, cut bodies, 500s, a 429,
calls without a recording), archives every call it has into ./demo-archive with the same code
path as `run`, prints the summary and says where to look.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from archiver.config.settings import load_settings
from archiver.engine.assembly import RunOptions
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import read_ids
from archiver.engine.lifecycle import execute
from archiver.engine.outputs import RunResult
from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.monitoring.counts import Progress
from archiver.monitoring.progress import LiveDisplay, StatusLines
from archiver.monitoring.summary import render

DEMO_DIR = Path("demo-archive")


def demo_config() -> FakeConfig:
    return FakeConfig(
        calls=60,
        seed=2026,
        size_min=256 * 1024,
        size_max=2 * 1024 * 1024,
        bandwidth=3 * 1024 * 1024,
        api_latency=0.02,
        download_latency=0.03,
        retry_after="1",
        faults={
            FaultKind.RESET: Fault(rate=0.12),
            FaultKind.CUT: Fault(rate=0.08),
            FaultKind.REC_500: Fault(rate=0.08),
            FaultKind.API_500: Fault(rate=0.05),
            FaultKind.API_429: Fault(rate=0.03),
            FaultKind.NOT_AVAILABLE: Fault(rate=0.05),
        },
    )


async def run_demo(out_dir: Path = DEMO_DIR, *, live: bool | None = None) -> int:
    async with FakeOSVI(demo_config()) as fake:
        print(
            f"Started the embedded fake OSVI service: API {fake.base_url}, recordings on "
            f"{fake.recording_origin}, {len(fake.calls)} calls, faults on.",
            file=sys.stderr,
        )
        print(f"Archiving them into {out_dir}/ ...", file=sys.stderr)
        settings = load_settings(
            {"base_url": fake.base_url, "out_dir": out_dir, "max_requests_per_second": 50},
            config_path=None,
            environ={"OSVI_API_TOKEN": fake.token},
        )
        csv = "call_id\n" + "".join(f"{c.call_id}\n" for c in fake.calls)
        items = read_ids(io.BytesIO(csv.encode()), "<demo calls>")
        show_bar = sys.stderr.isatty() if live is None else live
        progress: Progress = LiveDisplay() if show_bar else StatusLines(5.0)
        options = RunOptions(total=len(fake.calls))
        result = await execute(settings, run_input(items), progress, options)
        leaks = len(fake.stats.leaks)
    print(
        render(result.counts, result.seconds, result.manifest, result.report, result.error),
        file=sys.stderr,
    )
    _explain(out_dir, result, leaks)
    return result.exit_code


def _explain(out_dir: Path, result: RunResult, leaks: int) -> None:
    print(
        f"\nWhat happened: every call got a fresh presigned URL right before its download;\n"
        f"resets, cut bodies, 500s and the 429 were retried (resuming with Range where it\n"
        f"could); each file was hashed, checked against its length and MD5 ETag, fsynced and\n"
        f"only then renamed into place. The recording host saw the API token {leaks} times.\n"
        f"Look at:\n"
        f"  {out_dir}/manifest.json   the index of the manifest's parts (`osvi-archiver\n"
        f"      manifest --out {out_dir}` prints every call, its status and sha256)\n"
        f"  {out_dir}/runs/{result.run_id}.json   this run's report\n"
        f"  {out_dir}/   the recordings themselves\n"
        f"Run `osvi-archiver demo` again (`make demo` in a checkout): nothing is downloaded\n"
        f"twice. Then `osvi-archiver status --out {out_dir}`, `osvi-archiver verify --out\n"
        f"{out_dir}`, and 'Running against the real API' in README.md (the checkout's).",
        file=sys.stderr,
    )
