from __future__ import annotations

from pathlib import Path

import pytest

from archiver.errors import (
    ArchiveLocked,
    AuthError,
    DiskFull,
    InternalError,
    Interrupted,
    LocalError,
    RunError,
    Unavailable,
    UsageError,
)
from archiver.monitoring.counts import MAX_FAILED_SHOWN, Counts
from archiver.monitoring.summary import exit_code, render


def call_id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def line_of(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(label))


# Counts


def test_counts_add_tallies_each_status_and_archived_bytes() -> None:
    counts = Counts()
    counts.add("archived", call_id(1), 1000)
    counts.add("archived", call_id(2), 24)
    counts.add("already_archived", call_id(3), None)
    counts.add("pending", call_id(4), None)
    counts.add("not_available", call_id(5), None)
    counts.add("failed", call_id(6), None)
    assert (counts.archived, counts.already_archived, counts.pending) == (2, 1, 1)
    assert (counts.not_available, counts.failed, counts.bytes) == (1, 1, 1024)
    assert counts.failed_ids == [call_id(6)]
    assert counts.done == 6


def test_counts_done_leaves_out_duplicates_and_invalid_rows() -> None:
    assert Counts(archived=2, duplicates=5, invalid_rows=3).done == 2


def test_counts_keep_only_the_first_failed_ids() -> None:
    counts = Counts()
    for n in range(MAX_FAILED_SHOWN + 5):
        counts.add("failed", call_id(n), None)
    assert counts.failed == MAX_FAILED_SHOWN + 5
    assert counts.failed_ids == [call_id(n) for n in range(MAX_FAILED_SHOWN)]


def test_counts_to_json_is_plain_values() -> None:
    assert Counts(archived=1, bytes=5).to_json() == {
        "archived": 1,
        "already_archived": 0,
        "already_not_available": 0,
        "pending": 0,
        "not_available": 0,
        "failed": 0,
        "duplicates": 0,
        "invalid_rows": 0,
        "other_shards": 0,
        "incomplete_windows": 0,
        "bytes": 5,
        "failed_ids": [],
        "failed_kinds": [],
        "retries": {},
    }


# exit_code


@pytest.mark.parametrize(
    "counts",
    [
        Counts(),
        Counts(archived=3),
        Counts(archived=3, already_archived=2, pending=1, not_available=4, duplicates=7),
        Counts(pending=1),
        Counts(not_available=1),
    ],
)
def test_exit_code_is_zero_when_nothing_failed(counts: Counts) -> None:
    assert exit_code(counts, None) == 0


@pytest.mark.parametrize(
    "counts", [Counts(archived=3, failed=1), Counts(invalid_rows=1), Counts(failed=2)]
)
def test_exit_code_is_one_with_failed_calls_or_invalid_rows(counts: Counts) -> None:
    assert exit_code(counts, None) == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UsageError("bad flag"), 2),
        (AuthError("401"), 3),
        (LocalError("state unreadable"), 4),
        (DiskFull("disk full"), 4),
        (ArchiveLocked("held"), 75),
        (Unavailable("no answer"), 69),
        (InternalError("bug"), 70),
        (Interrupted(1, "SIGHUP"), 129),
        (RunError("other"), 1),
    ],
)
@pytest.mark.parametrize("counts", [Counts(), Counts(archived=5, failed=3, invalid_rows=2)])
def test_exit_code_of_a_run_level_error_wins(
    error: RunError, expected: int, counts: Counts
) -> None:
    assert exit_code(counts, error) == expected


# render


def test_render_lists_every_count_bytes_and_throughput() -> None:
    counts = Counts(
        archived=3,
        already_archived=4,
        pending=5,
        not_available=6,
        failed=0,
        duplicates=7,
        invalid_rows=8,
        bytes=3 * 1024 * 1024,
    )
    text = render(counts, 2.0, None, None, None)
    assert line_of(text, "archived ") == "archived          3"
    assert line_of(text, "already archived") == "already archived  4"
    assert line_of(text, "pending") == "pending           5"
    assert line_of(text, "not available") == "not available     6"
    assert line_of(text, "failed ") == "failed            0"
    assert line_of(text, "duplicates") == "duplicates        7"
    assert line_of(text, "invalid rows") == "invalid rows      8"
    assert line_of(text, "downloaded") == (
        "downloaded        3.0 MiB in 2.0 s (1.5 MiB/s, 9.0 calls/s)"
    )
    assert line_of(text, "exit code") == "exit code         1"
    assert "failed calls" not in text


def test_render_of_an_instant_run_does_not_divide_by_zero() -> None:
    text = render(Counts(archived=1, bytes=10), 0.0, None, None, None)
    assert line_of(text, "downloaded") == "downloaded        10 B in 0.0 s (0 B/s, 0.0 calls/s)"


def test_render_shows_the_first_twenty_failed_ids_one_a_line_with_their_kind() -> None:
    counts = Counts()
    for n in range(MAX_FAILED_SHOWN + 7):
        counts.add("failed", call_id(n), None, "not_audio" if n % 2 else "connection")
    text = render(counts, 10.0, None, None, None)
    lines = text.splitlines()
    start = lines.index("failed calls") + 1
    shown = [line.split() for line in lines[start : start + MAX_FAILED_SHOWN]]
    assert shown == [[call_id(n), "not_audio" if n % 2 else "connection"] for n in range(20)]
    assert call_id(20) not in text
    assert "… and 7 more" in text


def test_render_has_no_more_line_when_every_failed_id_is_shown() -> None:
    counts = Counts()
    for n in range(3):
        counts.add("failed", call_id(n), None)
    text = render(counts, 1.0, None, None, None)
    assert f"  {call_id(2)}  unknown" in text
    assert "more" not in text


def test_render_counts_the_retries_by_kind_and_shows_the_watermark() -> None:
    counts = Counts(archived=2)
    for kind in ("connection", "connection", "url_expired", "connection"):
        counts.retried(kind)
    text = render(counts, 1.0, None, None, None, watermark="2026-12-01T00:00:00Z")
    assert line_of(text, "retried") == "retried           3 connection, 1 url_expired"
    assert line_of(text, "sync watermark") == "sync watermark    2026-12-01T00:00:00Z"


def test_after_an_interruption_the_summary_says_a_rerun_continues() -> None:
    from archiver.errors import Interrupted

    text = render(Counts(archived=1), 1.0, None, None, Interrupted(15, "SIGTERM"))
    assert "a rerun of the same command continues from here" in text
    from archiver.errors import LocalError

    assert "continues" not in render(Counts(), 1.0, None, None, LocalError("disk full"))


def test_render_names_the_manifest_report_and_stopping_error(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    report = tmp_path / "runs" / "r1.json"
    error = AuthError("the OSVI API rejected the token")
    text = render(Counts(archived=1), 1.0, manifest, report, error)
    assert line_of(text, "manifest") == f"manifest          {manifest}"
    assert line_of(text, "run report") == f"run report        {report}"
    assert line_of(text, "stopped") == "stopped           the OSVI API rejected the token"
    assert line_of(text, "exit code") == "exit code         3"


def test_render_omits_paths_it_was_not_given() -> None:
    text = render(Counts(), 1.0, None, None, None)
    assert "manifest" not in text
    assert "run report" not in text
    assert "stopped" not in text
