"""`osvi-archiver check` against `list` of the same window (issue 20).

`check` walks the listing exactly as `list` does (the same code) and looks each listed call up
in the archive's state, read-only; `list` prints each as CSV. Over a window of 100,000 listed
calls, an archive holding every one of them (seeded straight into the state), both against the
same fake-server process, in paired, interleaved rounds (list, check, list, check, ...): the
ratio of the medians is the figure. Target: check within 1.2x of list.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from archiver.fake import FakeConfig, FakeOSVI
from bench.harness import Timed, env_for, fake_server, timed
from bench.seed import seed

Row = dict[str, Any]
ROUNDS = 3


def _picked(calls: int, days: int) -> list[str]:
    """The ids of the calls the listing gives with --status picked (generation is
    deterministic: the same seed and count give the fake-server's calls)."""
    fake = FakeOSVI(FakeConfig(calls=calls, days=days))
    return [c.call_id for c in fake.calls if c.status == "picked"]


def check_vs_list(scale: float) -> list[Row]:
    listed = max(10_000, int(100_000 * scale))
    calls, days = int(listed / 0.7) + 50, 3
    ids = _picked(calls, days)
    with tempfile.TemporaryDirectory(prefix="osvi-bench-check-") as temp:
        out = Path(temp) / "archive"
        seed(out, len(ids), ids=ids)
        with fake_server("--calls", str(calls), "--days", str(days), "--size-min", "64",
                         "--size-max", "64") as fake:  # fmt: skip
            env = {**env_for(fake), "OSVI_MAX_REQUESTS_PER_SECOND": "10000"}
            window = ["--since", f"{days + 1}d", "--until", "now", "--status", "picked"]
            lists: list[Timed] = []
            checks: list[Timed] = []
            for _ in range(ROUNDS):
                lists.append(timed([sys.executable, "-m", "archiver", "list", *window], env))
                checks.append(timed([sys.executable, "-m", "archiver", "check", "--out",
                                     str(out), *window, "--json"], env))  # fmt: skip
    bad = next((t for t in lists + checks if t.code != 0), None)
    list_s = statistics.median(t.seconds for t in lists)
    check_s = statistics.median(t.seconds for t in checks)
    ratio = round(check_s / list_s, 2)
    return [
        {
            "scenario": f"check: {len(ids):,} listed calls, all archived",
            "figure": "s (median)",
            "value": round(check_s, 2),
            "reference": f"list {list_s:.2f} s",
            "ratio": ratio,
            "target": "<= 1.2 x list",
            "ok": ratio <= 1.2,
            "exit": bad.code if bad else 0,
        },
        {
            "scenario": "check: CPU s against list's",
            "figure": "CPU s (median)",
            "value": round(statistics.median(t.cpu for t in checks), 2),
            "reference": f"list {statistics.median(t.cpu for t in lists):.2f}",
            "ratio": round(
                statistics.median(t.cpu for t in checks) / statistics.median(t.cpu for t in lists),
                2,
            ),
            "target": "report",
            "ok": None,
            "exit": bad.code if bad else 0,
        },
    ]


CHECK = {"check": check_vs_list}
