"""What a run does with each call it is given, decided in one place: the run (engine/pipeline.py)
and `--dry-run` (engine/dry_run.py) both ask `decide`, so the dry run says what the run does.

Pure: it reads the call's previous outcome and a few facts the caller has found (whether the
id is a repeat in this run, whether the run took it from the state first, `--force`), and asks
`on_disk` only of a call archived before (a stat: a rerun must notice a deleted file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from archiver.archive.outcomes import Status, retried_first
from archiver.engine.inputs import CallId
from archiver.state.call_records import Filed

FROM_STATE = "<archive>"  # the source of the calls a run takes from the state first


class Action(StrEnum):
    DOWNLOAD = "download"
    SKIP = "skip"
    SETTLE = "settle"  # an outcome recorded without a request (the listing said enough)


class Skipped(StrEnum):
    """The count a skipped call goes to."""

    ALREADY_ARCHIVED = "already_archived"
    ALREADY_NOT_AVAILABLE = "already_not_available"  # settled before: asked again only if told
    DUPLICATE = "duplicates"
    RETRIED_AGAIN = "retried_again"  # taken from the state first and named by the input too


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str  # what the dry run prints
    skipped: Skipped | None = None

    @property
    def download(self) -> bool:
        return self.action is Action.DOWNLOAD


ALREADY_ARCHIVED = Decision(Action.SKIP, "already archived", Skipped.ALREADY_ARCHIVED)
ALREADY_NOT_AVAILABLE = Decision(
    Action.SKIP, "not available before (final)", Skipped.ALREADY_NOT_AVAILABLE
)
DUPLICATE = Decision(Action.SKIP, "duplicate in the input", Skipped.DUPLICATE)
RETRIED_AGAIN = Decision(Action.SKIP, "taken from the archive first", Skipped.RETRIED_AGAIN)
NEW = Decision(Action.DOWNLOAD, "new")


def decide(
    previous: Filed | None,
    *,
    repeat: bool,
    retried: bool,
    force: bool,
    on_disk: Callable[[Filed], bool],
    retry_not_available: bool = False,
    unanswered: str | None = None,
) -> Decision:
    """Download, skip or settle one call, and why.

    `repeat`: this run took the id already (earlier in its input, or from the state first);
    `retried`: the run took it from the state first (pending or failed calls), so the input
    naming it again is no duplicate row; `force`: download again what is archived, and ask
    again what was not available; `retry_not_available`: only the latter; `unanswered`: the
    listing's (or a `list` export's) status of a call never answered: it has no recording, so
    it is settled as not_available without a request, unless its file is archived already or
    --force / --retry-not-available asks the API anyway.

    `not_available` is final (a 404 past the pending window, or a call never answered): a
    rerun does not ask the API again, so a rerun over settled ids makes no request at all."""
    if repeat:
        return RETRIED_AGAIN if retried else DUPLICATE
    if previous is not None and previous.status == Status.ARCHIVED:
        if force:
            return Decision(Action.DOWNLOAD, "archived, --force")
        if on_disk(previous):
            return ALREADY_ARCHIVED
        return Decision(Action.DOWNLOAD, "archived, but its file is missing or changed")
    # Settled once (a rerun asks and records nothing: it is final), never over a download
    # that failed here (that call had a recording URL: the listing is wrong).
    open_before = previous is None or previous.status in (None, Status.PENDING)
    if unanswered is not None and open_before and not (force or retry_not_available):
        return Decision(
            Action.SETTLE, f"not answered (the listing says {unanswered}): no recording"
        )
    if previous is None or previous.status is None:
        return NEW
    if previous.status == Status.FAILED:
        return Decision(Action.DOWNLOAD, f"failed before ({previous.error_kind or 'unknown'})")
    if previous.status == Status.PENDING:
        return Decision(Action.DOWNLOAD, "pending: asked again")
    if force or retry_not_available:
        flag = "--force" if force else "--retry-not-available"
        return Decision(Action.DOWNLOAD, f"not available before: asked again ({flag})")
    return ALREADY_NOT_AVAILABLE


class Retryable(Protocol):
    def ids_with_status(self, statuses: tuple[str, ...]) -> Iterator[str]: ...


def taken_first(
    state: Retryable | None,
    command: str,
    *,
    retry_failed: bool = False,
    retry_not_available: bool = False,
) -> list[CallId]:
    """The calls `command` takes from the state before its input (status.retried_first),
    read before the run changes them: the same list for the run and its dry run.
    `run --retry-failed --retry-not-available` takes the not_available calls too."""
    if state is None:
        return []
    statuses = retried_first(command, retry_failed=retry_failed)
    if retry_failed and retry_not_available:
        statuses = (*statuses, Status.NOT_AVAILABLE)
    return [
        CallId(call_id, FROM_STATE, number, retried=True)
        for number, call_id in enumerate(state.ids_with_status(statuses), 1)
    ]
