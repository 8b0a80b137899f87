"""The outcomes a call can have (§5) and what each command takes from the archive's state
before its input: written once, here."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A call's latest outcome, as the state, the manifest and the run report name it."""

    ARCHIVED = "archived"
    PENDING = "pending"  # 404 while the call is younger than pending_window: asked again later
    NOT_AVAILABLE = "not_available"  # no recording, for good (404 past the window, no audio)
    FAILED = "failed"  # max_attempts spent, or a permanent error


# What each command takes from the state before its input (§5.4): every run its pending
# calls; every sync its pending and failed ones too (so that its watermark may move past
# them); `run --retry-failed` only those, instead of an input.
_RETRIED_FIRST: dict[str, tuple[Status, ...]] = {
    "run": (Status.PENDING,),
    "sync": (Status.PENDING, Status.FAILED),
    "retry-failed": (Status.FAILED, Status.PENDING),
}


def retried_first(command: str, *, retry_failed: bool = False) -> tuple[Status, ...]:
    """The statuses `command` (run or sync) takes from the state first."""
    return _RETRIED_FIRST["retry-failed" if retry_failed else command]
