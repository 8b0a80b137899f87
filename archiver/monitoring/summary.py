"""The counts of a run and the end-of-run summary block (§6), rendered from plain values."""

from __future__ import annotations

from pathlib import Path

from archiver.errors import RunError
from archiver.monitoring.counts import Counts
from archiver.osvi.reconcile import WindowReport
from archiver.redaction import scrub


def exit_code(counts: Counts, error: RunError | None) -> int:
    """§6's table: a run-level error decides; else failures, invalid rows or listing windows
    that could not be walked through make it 1."""
    if error is not None:
        return error.exit_code
    return 1 if counts.failed or counts.invalid_rows or counts.incomplete_windows else 0


def size_text(count: float) -> str:
    """Bytes for a person: `512 B`, `1.5 MiB`, up to TiB."""
    unit = "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if count < 1024:
            break
        count, unit = count / 1024, bigger
    return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"


def render(
    counts: Counts,
    seconds: float,
    manifest: Path | str | None,
    report: Path | str | None,
    error: RunError | None,
    watermark: str | None = None,
    window: WindowReport | None = None,
) -> str:
    """The block printed on stderr at the end of a run."""
    rate = counts.bytes / seconds if seconds > 0 else 0.0
    calls_rate = counts.done / seconds if seconds > 0 else 0.0
    lines = [
        "── osvi-archiver summary ──",
        f"archived          {counts.archived}",
        f"already archived  {counts.already_archived}",
        f"pending           {counts.pending}",
        f"not available     {counts.not_available}",
        *(
            [f"  and before     {counts.already_not_available} (final: not asked again)"]
            if counts.already_not_available
            else []
        ),
        f"failed            {counts.failed}",
        f"duplicates        {counts.duplicates}",
        f"invalid rows      {counts.invalid_rows}",
        *([f"other shards      {counts.other_shards}"] if counts.other_shards else []),
        f"downloaded        {size_text(counts.bytes)} in {seconds:.1f} s "
        f"({size_text(rate)}/s, {calls_rate:.1f} calls/s)",
    ]
    if counts.retries:
        by_kind = sorted(counts.retries.items(), key=lambda item: (-item[1], item[0]))
        lines.append("retried           " + ", ".join(f"{n} {kind}" for kind, n in by_kind))
    lines += _failed_lines(counts)
    if window is not None:
        lines += window.lines()
    if watermark is not None:
        own = f" (of {window.filters})" if window and not window.default_filters else ""
        lines.append(f"sync watermark    {watermark}{own}")
    if error is not None:
        lines.append(f"stopped           {scrub(str(error))}")
        if error.exit_code in RESUMABLE:
            lines.append("                  a rerun of the same command continues from here")
    if manifest is not None:
        lines.append(f"manifest          {manifest}")
    if report is not None:
        lines.append(f"run report        {report}")
    lines.append(f"exit code         {exit_code(counts, error)}")
    return "\n".join(lines)


def render_quiet(counts: Counts, error: RunError | None, report: Path | str | None) -> str | None:
    """What `-q` prints at the end: nothing when the run exited 0; else why (the error that
    stopped it, the failed calls, the invalid rows' count, the listing's gaps), where the run
    report is, and the exit code."""
    code = exit_code(counts, error)
    if code == 0:
        return None
    lines = _failed_lines(counts)
    if counts.invalid_rows:
        lines.append(f"invalid rows      {counts.invalid_rows}")
    if counts.incomplete_windows:
        lines.append(f"incomplete windows {counts.incomplete_windows}")
    if error is not None:
        lines.append(f"stopped           {scrub(str(error))}")
    if report is not None:
        lines.append(f"run report        {report}")
    lines.append(f"exit code         {code}")
    return "\n".join(lines)


# Exit codes after which a rerun picks up where the run stopped: signals, --max-duration,
# an outage.
RESUMABLE = frozenset({69, 124, 129, 130, 143})


def _failed_lines(counts: Counts) -> list[str]:
    """The failed calls one a line with their error kind (the first MAX_FAILED_SHOWN)."""
    if not counts.failed_ids:
        return []
    lines = ["failed calls"]
    kinds = counts.failed_kinds + ["unknown"] * (len(counts.failed_ids) - len(counts.failed_kinds))
    lines += [
        f"  {call_id}  {kind}" for call_id, kind in zip(counts.failed_ids, kinds, strict=True)
    ]
    more = counts.failed - len(counts.failed_ids)
    if more > 0:
        lines.append(f"  … and {more} more (see the run report)")
    return lines
