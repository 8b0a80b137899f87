"""A run's own accounting, apart from any display: the counts of its outcomes and the view
model a display reads (monitoring/progress.py renders it; nothing here imports rich)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from archiver.archive.outcomes import Status

if TYPE_CHECKING:
    from archiver.osvi.reconcile import WindowReport

MAX_FAILED_SHOWN = 20


@dataclass
class Counts:
    archived: int = 0
    already_archived: int = 0
    already_not_available: int = 0  # not_available before: final, not asked again
    pending: int = 0
    not_available: int = 0
    failed: int = 0
    duplicates: int = 0
    invalid_rows: int = 0
    other_shards: int = 0  # ids left to the other shards of a --shard K/N run
    incomplete_windows: int = 0  # listing windows sync could not walk through (exit 1)
    bytes: int = 0
    failed_ids: list[str] = field(default_factory=list)
    failed_kinds: list[str] = field(default_factory=list)  # the error kind of each failed id
    retries: dict[str, int] = field(default_factory=dict)  # attempts retried, by error kind

    def add(self, status: str, call_id: str, size: int | None, kind: str | None = None) -> None:
        """Count one call's outcome (a Status), or one found already archived."""
        match status:
            case Status.ARCHIVED:
                self.archived += 1
                self.bytes += size or 0
            case Status.FAILED:
                self.failed += 1
                if len(self.failed_ids) < MAX_FAILED_SHOWN:
                    self.failed_ids.append(call_id)
                    self.failed_kinds.append(kind or "unknown")
            case Status.PENDING:
                self.pending += 1
            case Status.NOT_AVAILABLE:
                self.not_available += 1
            case "already_archived":
                self.already_archived += 1
            case "already_not_available":
                self.already_not_available += 1
            case _:
                raise ValueError(f"no such outcome: {status!r}")

    def retried(self, kind: str) -> None:
        """One attempt that failed with `kind` and is tried again."""
        self.retries[kind] = self.retries.get(kind, 0) + 1

    @property
    def done(self) -> int:
        """Calls that reached an outcome (duplicates and invalid rows are not calls)."""
        return (
            self.archived
            + self.already_archived
            + self.already_not_available
            + self.pending
            + self.not_available
            + self.failed
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Receiving(Protocol):
    """A download in flight, as a display sees it (download.Transfer)."""

    @property
    def arrived(self) -> int: ...  # bytes received so far

    total: int | None


@dataclass
class RunView:
    """A run's progress, written by the pipeline, read by the displays."""

    counts: Counts = field(default_factory=Counts)
    total: int | None = None  # ids the input holds, when known cheaply
    downloads: dict[str, Receiving] = field(default_factory=dict)  # call id -> in flight
    started: float = field(default_factory=time.monotonic)
    # Ids retried first from the state (they are in the total) that the input names again:
    # done once, counted here so that `done` still reaches the total.
    retried_again: int = 0
    # sync's check of its own window at the end (SyncSource.conclude), None for `run`.
    listing: Callable[[], WindowReport] | None = None

    def add_total(self, more: int) -> None:
        self.total = (self.total or 0) + more

    @property
    def done(self) -> int:
        """Ids taken from the input and dealt with, skipped ones included."""
        c = self.counts
        return c.done + c.duplicates + c.invalid_rows + c.other_shards + self.retried_again

    def bytes_now(self) -> int:
        """Bytes archived plus those received so far by the downloads in flight."""
        return self.counts.bytes + sum(d.arrived for d in self.downloads.values())


class Progress(Protocol):
    """A display of a run (monitoring/progress.py has them): started once the run goes,
    closed at its end."""

    def start(self, view: RunView) -> None: ...  # in the event loop
    def close(self) -> None: ...


class NoProgress:
    """No display (--progress never, and the tests)."""

    def start(self, view: RunView) -> None:
        pass

    def close(self) -> None:
        pass
