"""What the state holds of a call, as plain values (no SQLite here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the state: the latest outcome of a call, as the manifest shows it."""

    call_id: str
    status: str | None
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    archived_at: str | None = None
    attempts: int = 0
    run_id: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    metadata_path: str | None = None
    transcript_path: str | None = None
    started_at: float | None = None  # the call's time (epoch s), when a listing or details said
    md5_checked: bool | None = None  # its MD5 matched a plain-MD5 ETag; False: none could be


class Seen(NamedTuple):
    """What a claim tells of a call seen before: enough to skip it when still archived."""

    status: str | None
    path: str | None
    bytes: int | None
    error_kind: str | None = None


COLUMNS = (
    "call_id, status, path, bytes, sha256, content_type, archived_at, attempts, run_id, "
    "error_kind, error_message, metadata_path, transcript_path, started_at, md5_checked"
)


def columns_of(known: set[str]) -> str:
    """COLUMNS as a state whose `calls` table has the columns `known` can give them: those it
    lacks (an older schema opened read-only, or merged from) read as NULL."""
    return ", ".join(name if name in known else "NULL" for name in COLUMNS.split(", "))


class Found(NamedTuple):
    """What `check` reads of a call: its outcome, why it failed, its file and time."""

    call_id: str
    status: str | None
    error_kind: str | None
    error_message: str | None
    path: str | None
    started_at: float | None


class Filed(Protocol):
    """What the decision reads of a call seen before (a state's Seen or CallRecord)."""

    @property
    def status(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def bytes(self) -> int | None: ...
    @property
    def error_kind(self) -> str | None: ...
