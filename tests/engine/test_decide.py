"""decide(): download or skip, and why, with plain values (the run and the dry run ask it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from archiver.archive.outcomes import Status, retried_first
from archiver.destinations.folder import on_disk_in
from archiver.engine.decide import (
    ALREADY_ARCHIVED,
    ALREADY_NOT_AVAILABLE,
    DUPLICATE,
    NEW,
    RETRIED_AGAIN,
    Action,
    Decision,
    decide,
    taken_first,
)
from archiver.state.call_records import Filed


class Was(NamedTuple):
    status: str | None
    path: str | None = "a.mp4"
    bytes: int | None = 10
    error_kind: str | None = None


def get(reason: str) -> Decision:
    return Decision(Action.DOWNLOAD, reason)


def there(_: Filed) -> bool:
    return True


def gone(_: Filed) -> bool:
    return False


@pytest.mark.parametrize(
    ("previous", "force", "on_disk", "expected"),
    [
        (None, False, there, NEW),
        (Was(None), False, there, NEW),  # claimed by a run that never finished it
        (Was("archived"), False, there, ALREADY_ARCHIVED),
        (Was("archived"), False, gone, get("archived, but its file is missing or changed")),
        (Was("archived"), True, there, get("archived, --force")),
        (Was("failed", error_kind="http_500"), False, there, get("failed before (http_500)")),
        (Was("failed"), False, there, get("failed before (unknown)")),
        (Was("pending"), False, there, get("pending: asked again")),
        (Was("not_available"), True, there, get("not available before: asked again (--force)")),
        (Was("not_available"), False, there, ALREADY_NOT_AVAILABLE),  # final: not asked again
    ],
)  # fmt: skip
def test_each_previous_outcome_has_its_decision(
    previous: Was | None, force: bool, on_disk: Callable[[Filed], bool], expected: Decision
) -> None:
    decision = decide(previous, repeat=False, retried=False, force=force, on_disk=on_disk)
    assert decision == expected


def test_a_repeat_is_skipped_whatever_it_was_and_no_file_is_looked_at() -> None:
    def never(_: Filed) -> bool:
        raise AssertionError("a repeat needs no stat")

    for force in (False, True):
        was = Was("archived")
        assert decide(was, repeat=True, retried=False, force=force, on_disk=never) == DUPLICATE
        again = decide(None, repeat=True, retried=True, force=force, on_disk=never)
        assert again == RETRIED_AGAIN


def test_the_file_is_looked_at_only_for_a_call_archived_before() -> None:
    asked: list[Filed] = []

    def on_disk(record: Filed) -> bool:
        asked.append(record)
        return True

    for status in (None, "failed", "pending", "not_available"):
        decide(Was(status), repeat=False, retried=False, force=False, on_disk=on_disk)
    assert asked == []
    decide(Was("archived"), repeat=False, retried=False, force=True, on_disk=on_disk)
    assert asked == []  # --force downloads it anyway


def test_on_disk_compares_the_size_recorded(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "a.mp4").write_bytes(b"x" * 10)
    on_disk = on_disk_in(folder)
    assert on_disk(Was("archived", "a.mp4", 10))
    assert not on_disk(Was("archived", "a.mp4", 11))  # truncated or changed
    assert not on_disk(Was("archived", "b.mp4", 10))  # deleted
    assert not on_disk(Was("archived", None, 10))


class Retrying:
    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def ids_with_status(self, statuses: tuple[str, ...]):  # type: ignore[no-untyped-def]
        self.asked.append(statuses)
        yield from ("id-1", "id-2")


def test_each_command_takes_its_own_statuses_first_in_one_place() -> None:
    assert retried_first("run") == (Status.PENDING,)
    assert set(retried_first("sync")) == {Status.PENDING, Status.FAILED}
    assert set(retried_first("run", retry_failed=True)) == {Status.PENDING, Status.FAILED}
    state = Retrying()
    first = taken_first(state, "sync")
    assert state.asked == [retried_first("sync")]
    assert [(c.call_id, c.line, c.retried) for c in first] == [("id-1", 1, True), ("id-2", 2, True)]
    assert taken_first(None, "run") == []


def test_retry_not_available_asks_again_only_what_was_not_available() -> None:
    def decided(was: Was | None) -> Decision:
        return decide(
            was, repeat=False, retried=False, force=False, on_disk=there, retry_not_available=True
        )

    asked = decided(Was("not_available"))
    assert asked.download
    assert asked.reason == "not available before: asked again (--retry-not-available)"
    assert decided(Was("archived")) == ALREADY_ARCHIVED


@pytest.mark.parametrize(
    ("previous", "force", "on_disk", "expected"),
    [
        (None, False, there, Action.SETTLE),  # never seen: settled without a request
        (Was("pending"), False, there, Action.SETTLE),
        (Was("not_available"), True, there, Action.DOWNLOAD),  # --force asks the API anyway
        (Was("archived"), False, there, Action.SKIP),  # its file stands
        (Was("archived"), False, gone, Action.DOWNLOAD),  # the listing may be wrong: asked
        (Was("archived"), True, there, Action.DOWNLOAD),
        # Its download failed here: there was a recording URL, whatever the listing says.
        (Was("failed", error_kind="incomplete_body"), False, there, Action.DOWNLOAD),
        (Was("not_available"), False, there, Action.SKIP),  # settled before: final, counted so
    ],
)  # fmt: skip
def test_a_call_the_listing_says_was_never_answered_is_settled_without_a_request(
    previous: Was | None, force: bool, on_disk: Callable[[Filed], bool], expected: Action
) -> None:
    decision = decide(
        previous, repeat=False, retried=False, force=force, on_disk=on_disk, unanswered="busy"
    )
    assert decision.action is expected
    if expected is Action.SETTLE:
        assert decision.reason == "not answered (the listing says busy): no recording"


def test_the_dry_run_says_what_it_would_settle_apart_from_what_it_would_skip() -> None:
    """A settled call gets an outcome without a request: neither a download nor a skip."""
    import io

    from archiver.engine.dry_run import DryRun

    out = io.StringIO()
    dry = DryRun(None, there, out)
    dry.call("11111111-1111-4111-8111-111111111111", unanswered="busy")
    dry.call("22222222-2222-4222-8222-222222222222")
    assert out.getvalue().splitlines()[0].startswith("settle\t11111111")
    text = dry.counts.render()
    assert "would settle      1 as not available, asking nothing (1 not answered" in text
    assert "would skip        0 (none)" in text
    assert "would download    1 (1 new)" in text
