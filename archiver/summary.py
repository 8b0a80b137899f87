"""The counts of a run and the end-of-run summary block (§6), rendered from plain values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from archiver.errors import RunError
from archiver.redaction import scrub

MAX_FAILED_SHOWN = 20


@dataclass
class Counts:
    archived: int = 0
    already_archived: int = 0
    pending: int = 0
    not_available: int = 0
    failed: int = 0
    duplicates: int = 0
    invalid_rows: int = 0
    other_shards: int = 0  # ids left to the other shards of a --shard K/N run
    bytes: int = 0
    failed_ids: list[str] = field(default_factory=list)

    def add(self, status: str, call_id: str, size: int | None) -> None:
        setattr(self, status, getattr(self, status) + 1)
        if status == "archived":
            self.bytes += size or 0
        elif status == "failed" and len(self.failed_ids) < MAX_FAILED_SHOWN:
            self.failed_ids.append(call_id)

    @property
    def done(self) -> int:
        """Calls that reached an outcome (duplicates and invalid rows are not calls)."""
        return (
            self.archived + self.already_archived + self.pending + self.not_available + self.failed
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def exit_code(counts: Counts, error: RunError | None) -> int:
    """§6's table: a run-level error decides; else failures or invalid rows make it 1."""
    if error is not None:
        return error.exit_code
    return 1 if counts.failed or counts.invalid_rows else 0


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
    manifest: Path | None,
    report: Path | None,
    error: RunError | None,
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
        f"failed            {counts.failed}",
        f"duplicates        {counts.duplicates}",
        f"invalid rows      {counts.invalid_rows}",
        *([f"other shards      {counts.other_shards}"] if counts.other_shards else []),
        f"downloaded        {size_text(counts.bytes)} in {seconds:.1f} s "
        f"({size_text(rate)}/s, {calls_rate:.1f} calls/s)",
    ]
    if counts.failed_ids:
        more = counts.failed - len(counts.failed_ids)
        lines.append("failed calls      " + ", ".join(counts.failed_ids))
        if more > 0:
            lines.append(f"                  … and {more} more (see the run report)")
    if error is not None:
        lines.append(f"stopped           {scrub(str(error))}")
    if manifest is not None:
        lines.append(f"manifest          {manifest}")
    if report is not None:
        lines.append(f"run report        {report}")
    lines.append(f"exit code         {exit_code(counts, error)}")
    return "\n".join(lines)
