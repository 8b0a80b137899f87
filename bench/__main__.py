"""`python -m bench [--quick] [--only NAME ...]`: run the scenarios, print one table, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench.scenarios import ALL, curl_version

OUT = Path(__file__).parent / "out"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, to try it out")
    parser.add_argument("--only", nargs="*", choices=sorted(ALL), help="some scenarios only")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    rows = []
    for name in args.only or list(ALL):
        started = time.monotonic()
        print(f"… {name}", flush=True)
        rows += ALL[name](scale)
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"\nosvi-archiver benchmarks ({'quick' if args.quick else 'full'}) on {machine}; "
        f"{curl_version()}"
    )
    print(f"{'scenario':<44} {'figure':<17} {'value':>9}  {'reference':<16} {'ratio':>6}  target")
    failed_runs = 0
    for row in rows:
        mark = {True: "ok", False: "MISSED", None: ""}[row["ok"]]
        if row["exit"] is not None and row["exit"] != row.get("expected_exit", 0):
            mark, failed_runs = f"INVALID: the run exited {row['exit']}", failed_runs + 1
        print(
            f"{row['scenario']:<44} {row['figure']:<17} {row['value']!s:>9}  "
            f"{row['reference']:<16} {row['ratio']!s:>6}  {row['target']} {mark}"
        )
    if failed_runs:
        print(f"\n{failed_runs} rows come from runs that did not exit as expected: not figures")
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\nwritten to {OUT / 'results.json'}")
    return 0


raise SystemExit(main())
