"""`osvi-archiver status`: what an archive holds and how its runs went, read cheaply.

From the state only, opened read-only (no lock: it can run beside a nightly), without reading
or hashing a recording and without a scan of the calls: the counts per status are the
manifest's catalog (as of the last manifest write, at the end of every run and every minute of
one), the pending calls come from their own small index, the watermark and the last run from
the state's meta. A folder shared by shards, or a bucket's shards, show one block each. In a
folder, the manifest's index is held against the parts written after it (a stat of each, a
hash of those few): an index that lags them is said, and why (export.IndexLag).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from archiver.archive.outcomes import Status
from archiver.archive.shard import shard_text
from archiver.destinations.base import Destination
from archiver.destinations.folder import LocalFolder
from archiver.errors import LocalError
from archiver.manifest.export import index_lag
from archiver.state.catalog import snapshot
from archiver.state.database import State
from archiver.state.meta import (
    LAST_RUN_KEY,
    LAST_SUCCESS_KEY,
    WATERMARK_KEY,
    other_watermarks,
    watermark_at,
    watermark_params,
)

PENDING_SHOWN = 20
PENDING_READ = 10_000  # pending calls whose last try is read (their own index: cheap)


def overview(destination: Destination) -> dict[str, Any]:
    """Every state of the archive, summed up. A folder that is not there is an error (a typo
    in a monitoring check must not pass as an empty archive); one without a state yet is
    not."""
    if isinstance(destination, LocalFolder) and not destination.root.is_dir():
        raise LocalError(f"{destination.root} is not a folder: no archive there")
    states: list[dict[str, Any]] = []
    for shard in destination.states():
        with destination.viewing(shard) as state:
            if state is not None:
                lag = index_lag(destination, shard, every=False)
                states.append({"shard": shard_text(shard) or None, **_one(state),
                               "manifest": lag.explain() if lag else None})  # fmt: skip
    return {"archive": destination.where, "states": states}


def _one(state: State) -> dict[str, Any]:
    with snapshot(state) as snap:
        parts = snap.parts()
    counts: Counter[str] = Counter({status.value: 0 for status in Status})
    for info in parts.values():
        counts.update(info.counts)
    mark = watermark_at(state, WATERMARK_KEY)
    others = {
        _filters_text(key): _iso(at.timestamp()) for key, at in other_watermarks(state).items()
    }
    return {
        "counts": dict(counts),
        "total": sum(counts.values()),
        "sync_watermark": _iso(mark.timestamp()) if mark else None,
        "other_watermarks": others,
        "last_run": _last_run(state.get_meta(LAST_RUN_KEY)),
        "last_success_at": _success(state.get_meta(LAST_SUCCESS_KEY)),
        "pending": _pending(state),
    }


_LAST_RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "command": str, "finished_at": str, "exit_code": int, "seconds": (int, float),
}  # fmt: skip


def _last_run(text: str | None) -> dict[str, Any] | None:
    """The last run as outputs.finish recorded it; None when absent or unreadable."""
    try:
        found = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(found, dict) or not all(
        isinstance(found.get(k), kind) for k, kind in _LAST_RUN_FIELDS.items()
    ):
        return None
    return found


def _success(text: str | None) -> str | None:
    try:
        epoch = float(text) if text else None
    except ValueError:
        return None
    return _iso(epoch) if epoch is not None and math.isfinite(epoch) else None


def _pending(state: State) -> dict[str, Any]:
    """How many calls are pending, and when each (the first PENDING_SHOWN) was last tried:
    the time of the run that last asked (run ids start with their start time)."""
    ids = state.ids_with_status((Status.PENDING.value,))
    shown: list[dict[str, Any]] = []
    oldest: str | None = None
    count = 0
    for call_id in ids:
        count += 1
        if count > PENDING_READ:
            continue
        record = state.get(call_id)
        tried = _run_time(record.run_id if record else None)
        if tried and (oldest is None or tried < oldest):
            oldest = tried
        if len(shown) < PENDING_SHOWN and record is not None:
            shown.append({"call_id": call_id, "attempts": record.attempts, "last_tried": tried})
    return {"count": count, "oldest_last_tried": oldest, "calls": shown}


def _run_time(run_id: str | None) -> str | None:
    """`20261202T031500.123Z-abcdef` -> `2026-12-02T03:15:00Z`; None for another shape."""
    if not run_id:
        return None
    try:
        moment = datetime.strptime(run_id.split("Z", 1)[0], "%Y%m%dT%H%M%S.%f")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC, microsecond=0).isoformat().replace("+00:00", "Z")


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def _ago(iso: str | None, now: float) -> str:
    if iso is None:
        return "?"
    seconds = now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def render(view: dict[str, Any], now: float | None = None) -> str:
    """The block a person reads."""
    at = time.time() if now is None else now
    lines = ["── osvi-archiver status ──", f"archive           {view['archive']}"]
    if not view["states"]:
        lines.append("state             none yet: nothing was archived here")
    for one in view["states"]:
        lines += _block(one, at)
    return "\n".join(lines)


def _block(one: dict[str, Any], at: float) -> list[str]:
    counts = one["counts"]
    shown = ", ".join(f"{counts[s.value]:,} {s.value.replace('_', ' ')}" for s in Status)
    lines = [
        f"shard             {one['shard'] or 'whole archive'}",
        f"calls             {one['total']:,} ({shown})",
        f"sync watermark    {one['sync_watermark'] or 'none (no sync yet)'}",
    ]
    for filters, mark in one["other_watermarks"].items():
        lines.append(f"  of a sync with {filters}: {mark}")
    run = one["last_run"]
    if run:
        lines.append(
            f"last run          {run['command']} {run['run_id']}, ended {run['finished_at'][:19]}Z"
            f" ({_ago(run['finished_at'][:19] + 'Z', at)}), exit {run['exit_code']}, "
            f"{run['seconds']:.1f} s"
        )
    else:
        lines.append("last run          none recorded")
    lines.append(f"last success      {one['last_success_at'] or 'never'}")
    if one.get("manifest"):
        lines.append(f"manifest          {one['manifest']}")
    pending = one["pending"]
    lines.append(
        f"pending           {pending['count']:,}"
        + (
            f", oldest last tried {_ago(pending['oldest_last_tried'], at)}"
            if pending["count"]
            else ""
        )
    )
    for call in pending["calls"]:
        lines.append(
            f"  {call['call_id']}  last tried {call['last_tried'] or '?'}, "
            f"{call['attempts']} attempt{'' if call['attempts'] == 1 else 's'}"
        )
    return lines


def _filters_text(key: str) -> str:
    """A filtered watermark's filter set as `sync` names it (the listing's module, with its
    retry policy, imported only for an archive that has one: status starts quickly)."""
    from archiver.osvi.listing import params_text

    return params_text(watermark_params(key) or {})
