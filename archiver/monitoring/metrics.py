"""`--metrics-file`: a Prometheus textfile written at the end of each run (issue 7).

For node_exporter's textfile collector: the file is written to a temp name in the same folder
(`.<name>.<random>.tmp`, which the collector ignores) and renamed over the old one, so a scrape
never reads half a file. Mode 0644 whatever `file_mode` says: it holds counts and times, no
personal data, and node_exporter usually runs as another user.

Every series describes the last run, except `osvi_archiver_last_success_timestamp_seconds`,
which is the end of the last run that exited 0 (kept in the archive's state, so a failed run
still reports it). Sharded runs label every series with `shard="K/N"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard, shard_text
from archiver.archive.storage import write_atomic
from archiver.monitoring.counts import Counts
from archiver.osvi.reconcile import WindowReport

METRICS_MODE = 0o644
FINAL_STATUSES = (
    Status.ARCHIVED,
    "already_archived",
    "already_not_available",
    Status.PENDING,
    Status.NOT_AVAILABLE,
    Status.FAILED,
)
SKIPPED = (
    ("duplicate", "duplicates"),
    ("invalid", "invalid_rows"),
    ("other_shard", "other_shards"),
)


@dataclass(frozen=True)
class RunMetrics:
    command: str  # run or sync
    counts: Counts
    seconds: float
    exit_code: int
    finished_at: float  # epoch seconds
    last_success_at: float | None  # epoch seconds of the last run that exited 0
    shard: Shard | None = None
    watermark: float | None = None  # sync's watermark (epoch seconds), once there is one
    listing: WindowReport | None = None  # sync's check of its own window


def _labels(base: dict[str, str], **more: str) -> str:
    pairs = {**base, **more}
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Families:
    """Gauge families as the text exposition format writes them (0.0.4)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} gauge")
        self.lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _base(command: str, shard: Shard | None) -> dict[str, str]:
    return {"command": command} | ({"shard": shard_text(shard)} if shard else {})


def render(metrics: RunMetrics) -> str:
    """The textfile's content (text exposition format 0.0.4)."""
    base = _base(metrics.command, metrics.shard)
    family = _Families()

    counts = metrics.counts
    family(
        "osvi_archiver_calls",
        "Calls of the last run by final status.",
        ((_labels(base, status=s), getattr(counts, s)) for s in FINAL_STATUSES),
    )
    family(
        "osvi_archiver_input_rows_skipped",
        "Input rows of the last run that were not calls to archive, by reason.",
        ((_labels(base, reason=r), getattr(counts, field)) for r, field in SKIPPED),
    )
    one = _labels(base)
    family("osvi_archiver_bytes", "Bytes archived by the last run.", iter([(one, counts.bytes)]))
    family(
        "osvi_archiver_run_duration_seconds",
        "How long the last run took.",
        iter([(one, round(metrics.seconds, 3))]),
    )
    family(
        "osvi_archiver_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        iter([(one, round(metrics.finished_at, 3))]),
    )
    family(
        "osvi_archiver_exit_code",
        "Exit code of the last run (0 ok, 1 some calls failed, 3 token, 4 local, 69 unreachable, "
        "70 internal error, 75 locked, 124 max duration, 129/130/143 signal).",
        iter([(one, metrics.exit_code)]),
    )
    if metrics.last_success_at is not None:
        family(
            "osvi_archiver_last_success_timestamp_seconds",
            "When the last run that exited 0 ended (Unix time).",
            iter([(one, round(metrics.last_success_at, 3))]),
        )
    listing = metrics.listing
    if listing is not None and not listing.default_filters:  # its own watermark and window
        base = base | {"filters": listing.filters}
        one = _labels(base)
    if metrics.watermark is not None:
        family(
            "osvi_archiver_sync_watermark_timestamp_seconds",
            "sync's watermark: every listed call picked up before it reached an outcome (Unix "
            "time); one that stops moving means syncs make no progress. A sync with filters "
            "other than the default keeps its own, labelled with them.",
            iter([(one, round(metrics.watermark, 3))]),
        )
    if listing is not None:
        family(
            "osvi_archiver_sync_window_calls",
            "Calls the last sync listed in its window, and how many of them hold an outcome "
            "(archived, pending or not available) at its end.",
            iter([(_labels(base, calls="listed"), listing.listed),
                  (_labels(base, calls="with_outcome"), listing.accounted)]),
        )  # fmt: skip
        family(
            "osvi_archiver_sync_window_complete",
            "1 when the last sync listed its whole window and every listed call holds an "
            "outcome; else 0.",
            iter([(one, int(listing.complete))]),
        )
        family(
            "osvi_archiver_listing_incomplete_windows",
            "Windows of the listing the last sync could not walk through completely (the "
            "watermark stays before the first).",
            iter([(one, len(listing.gaps))]),
        )
    return family.text()


@dataclass(frozen=True)
class CheckMetrics:
    """What `osvi-archiver check` reports to monitoring: plain numbers. A check that could
    not end (a usage error, the token refused, the API unreachable) has no counts: its exit
    code and time only."""

    exit_code: int
    finished_at: float  # epoch seconds
    missing: int | None = None
    listed: int | None = None
    incomplete_windows: int | None = None
    unlisted: int | None = None  # None: not checked
    shard: Shard | None = None


def render_check(metrics: CheckMetrics) -> str:
    """A check's own textfile: kept apart from the runs' (a file is replaced whole)."""
    one = _labels(_base("check", metrics.shard))
    family = _Families()
    counts = (
        ("osvi_archiver_check_missing_calls",
         "Listed calls the archive does not hold (failed, never seen), at the last check.",
         metrics.missing),
        ("osvi_archiver_check_listed_calls", "Calls the last check listed in its window.",
         metrics.listed),
        ("osvi_archiver_check_incomplete_windows",
         "Windows of the listing the last check could not walk through.",
         metrics.incomplete_windows),
        ("osvi_archiver_check_unlisted_calls",
         "Archived calls of the last check's window that the listing did not show.",
         metrics.unlisted),
    )  # fmt: skip
    for name, help_text, value in counts:
        if value is not None:
            family(name, help_text, [(one, value)])
    family("osvi_archiver_check_timestamp_seconds", "When the last check ended (Unix time).",
           [(one, round(metrics.finished_at, 3))])  # fmt: skip
    family(
        "osvi_archiver_check_exit_code",
        "Exit code of the last check (0 nothing missing, 1 calls missing or a window not "
        "listed, 2 usage, 3 token, 4 local, 69 unreachable, 70 internal error).",
        [(one, metrics.exit_code)],
    )
    return family.text()


def write_check(path: Path, metrics: CheckMetrics) -> None:
    write_atomic(path, [render_check(metrics).encode()], METRICS_MODE)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write(path: Path, metrics: RunMetrics) -> None:
    """Atomically replace `path` (temp file in the same folder, fsync, rename)."""
    write_atomic(path, [render(metrics).encode()], METRICS_MODE)
