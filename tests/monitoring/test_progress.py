"""The progress displays' arithmetic and text (monitoring/progress.py), from plain values."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import pytest
from rich.console import Console

from archiver.monitoring.counts import Counts, NoProgress, RunView
from archiver.monitoring.progress import (
    MAX_DOWNLOADS_SHOWN,
    ByteRate,
    LiveDisplay,
    StatusLines,
    duration_text,
    eta,
    status_line,
    statuses_text,
)
from archiver.monitoring.summary import size_text

MiB = 1024 * 1024


@dataclass
class Receiving:
    """Stands in for a download in flight (download.Transfer)."""

    arrived: int
    total: int | None = None


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# RunView


def test_done_counts_outcomes_and_skipped_rows() -> None:
    counts = Counts(
        archived=2,
        already_archived=3,
        pending=1,
        not_available=4,
        failed=5,
        duplicates=6,
        invalid_rows=7,
        other_shards=8,
    )
    assert RunView(counts).done == 2 + 3 + 1 + 4 + 5 + 6 + 7 + 8


def test_add_total_starts_from_unknown() -> None:
    view = RunView()
    assert view.total is None
    view.add_total(3)
    view.add_total(4)
    assert view.total == 7


def test_bytes_now_adds_what_downloads_in_flight_received() -> None:
    view = RunView(Counts(bytes=1000))
    assert view.bytes_now() == 1000
    view.downloads["a"] = Receiving(arrived=200, total=500)
    view.downloads["b"] = Receiving(arrived=30)
    assert view.bytes_now() == 1230


# eta


def test_eta_is_unknown_without_a_total() -> None:
    view = RunView(Counts(archived=5), total=None, started=0.0)
    assert eta(view, now=10.0) is None


def test_eta_is_unknown_before_anything_is_done() -> None:
    view = RunView(Counts(), total=40, started=0.0)
    assert eta(view, now=10.0) is None


def test_eta_extrapolates_the_pace_of_the_calls_that_needed_work() -> None:
    view = RunView(Counts(archived=8, duplicates=2), total=40, started=100.0)
    # 8 calls worked on in 20 s (the 2 duplicates cost nothing): the 30 left take 75 s.
    assert eta(view, now=120.0) == pytest.approx(75.0)


def test_a_resumed_runs_skipped_ids_do_not_shorten_its_eta() -> None:
    """Issue 15's case: 900 ids already archived went by in 2 s, then 10 downloads took 8 s;
    90 are left: 72 s, not the 1 s the pace of all ids done would say."""
    view = RunView(Counts(already_archived=900, archived=10), total=1000, started=0.0)
    assert eta(view, now=10.0) == pytest.approx(90 * 10.0 / 10)
    only_skipped = RunView(Counts(already_archived=900), total=1000, started=0.0)
    assert eta(only_skipped, now=2.0) is None


def test_eta_is_zero_once_done_exceeds_a_high_total() -> None:
    view = RunView(Counts(archived=12), total=10, started=0.0)
    assert eta(view, now=5.0) == 0.0


# ByteRate


def test_byte_rate_over_injected_times() -> None:
    rate = ByteRate()
    assert rate.sample(0.0, 0) == 0.0  # one sample: no rate yet
    assert rate.sample(5.0, 5 * MiB) == pytest.approx(1 * MiB)


def test_byte_rate_drops_samples_older_than_its_window() -> None:
    rate = ByteRate()
    rate.sample(0.0, 0)
    rate.sample(5.0, 5 * MiB)
    # The sample at 0 s is older than 10 s: the rate is over [5, 15], not [0, 15].
    assert rate.sample(15.0, 25 * MiB) == pytest.approx(2 * MiB)
    assert rate.sample(21.0, 31 * MiB) == pytest.approx(1 * MiB)  # over [15, 21]


def test_byte_rate_never_goes_negative() -> None:
    rate = ByteRate()
    rate.sample(0.0, 1000)
    assert rate.sample(1.0, 10) == 0.0


# texts


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * MiB, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (1024**5, "1024.0 TiB"),
    ],
)
def test_size_text(count: int, text: str) -> None:
    assert size_text(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (3725, "1h02m")],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_statuses_text_shows_archived_and_failed_always_the_others_once_seen() -> None:
    assert statuses_text(Counts()) == "archived 0, failed 0"
    assert statuses_text(Counts(archived=1234, pending=2, invalid_rows=1)) == (
        "archived 1,234, pending 2, failed 0, invalid rows 1"
    )


def test_status_line_with_a_total() -> None:
    view = RunView(Counts(archived=10, failed=1, duplicates=1, bytes=2048), total=40, started=0.0)
    view.downloads["x"] = Receiving(arrived=1024, total=4096)
    line = status_line(view, now=60.0, rate=1024.0)
    assert "12 of 40 ids (30%)" in line
    assert "archived 10, failed 1, duplicates 1" in line
    assert "ETA 2m32s" in line  # 28 left at 11 calls worked on a minute (not the duplicate)
    assert line == (
        "progress: 12 of 40 ids (30%); archived 10, failed 1, duplicates 1; "
        "3.0 KiB at 1.0 KiB/s; 1 downloading; elapsed 1m00s; ETA 2m32s"
    )


def test_status_line_without_a_total_has_no_percentage_nor_eta() -> None:
    view = RunView(Counts(archived=3), started=0.0)
    line = status_line(view, now=5.0, rate=0.0)
    assert line == "progress: 3 ids; archived 3, failed 0; 0 B at 0 B/s; 0 downloading; elapsed 5s"


# LiveDisplay.render


def rendered(display: LiveDisplay) -> str:
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    console.print(display.render())
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def live_display(view: RunView, clock: Clock) -> LiveDisplay:
    display = LiveDisplay(Console(file=io.StringIO(), width=120, force_terminal=False))
    display._clock = clock
    display.view = view  # what start() does, without the live region or the event loop
    return display


def test_live_display_shows_counts_rate_and_downloads() -> None:
    clock = Clock(0.0)
    view = RunView(Counts(archived=5, pending=1), total=20, started=0.0)
    view.downloads["call-half"] = Receiving(arrived=512 * 1024, total=MiB)
    view.downloads["call-new"] = Receiving(arrived=0)
    view.downloads["call-unsized"] = Receiving(arrived=3000)
    display = live_display(view, clock)
    display.rate()  # the first sample, as start() takes it
    clock.now = 10.0
    view.counts.bytes = 10 * MiB  # 10 MiB more in 10 s
    text = rendered(display)
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert "archiving" in lines[0]
    assert "6 of 20 ids" in lines[0]
    assert "10s elapsed ETA 23s" in lines[0]  # 14 left at 6 per 10 s
    assert "archived 5, pending 1, failed 0" in text
    assert "10.5 MiB at 1.0 MiB/s, 3 downloading" in text
    assert "call-half  512.0 KiB of 1.0 MiB (50%)" in text
    assert "call-new  starting" in text
    assert "call-unsized  2.9 KiB" in text
    assert "more" not in text


def test_live_display_without_a_total() -> None:
    view = RunView(Counts(archived=2), started=0.0)
    display = live_display(view, Clock(3.0))
    first = rendered(display).splitlines()[0]
    assert "2 ids" in first
    assert " of " not in first
    assert "ETA" not in first


def test_live_display_lists_a_few_downloads_and_counts_the_rest() -> None:
    view = RunView(Counts(), total=100, started=0.0)
    ids = [f"call-{n:02d}" for n in range(MAX_DOWNLOADS_SHOWN + 3)]
    for n, call_id in enumerate(ids):
        view.downloads[call_id] = Receiving(arrived=n * 1024, total=100 * 1024)
    text = rendered(live_display(view, Clock(1.0)))
    for n, call_id in enumerate(ids[:MAX_DOWNLOADS_SHOWN]):
        assert f"{call_id}  {size_text(n * 1024)} of 100.0 KiB ({n}%)" in text
    for call_id in ids[MAX_DOWNLOADS_SHOWN:]:
        assert call_id not in text
    assert "… and 3 more" in text
    assert f"{MAX_DOWNLOADS_SHOWN + 3} downloading" in text


# StatusLines and NoProgress


def progress_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "progress"]


async def test_status_lines_log_progress_every_interval_until_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="archiver.monitoring.progress")
    view = RunView(Counts(archived=3, failed=1, bytes=4096), total=10)
    view.downloads["abc"] = Receiving(arrived=100, total=1000)
    lines = StatusLines(interval=0.01)
    lines.start(view)
    try:
        for _ in range(200):  # up to 2 s; a tick comes every 0.01 s
            if len(progress_records(caplog)) >= 2:
                break
            await asyncio.sleep(0.01)
    finally:
        lines.close()
    records = progress_records(caplog)
    assert len(records) >= 2
    record = records[0]
    assert record.name == "archiver.monitoring.progress"
    assert record.levelno == logging.INFO
    assert record.__dict__["done"] == 4
    assert record.__dict__["total"] == 10
    assert record.__dict__["bytes"] == 4196
    assert record.__dict__["downloading"] == 1
    assert record.__dict__["counts"]["archived"] == 3
    assert record.__dict__["counts"]["failed"] == 1
    assert record.getMessage().startswith("progress: 4 of 10 ids (40%); archived 3, failed 1;")
    seen = len(progress_records(caplog))
    await asyncio.sleep(0.05)  # five intervals: nothing more once closed
    assert len(progress_records(caplog)) == seen


async def test_status_lines_close_before_start_is_harmless() -> None:
    lines = StatusLines(interval=0.01)
    lines.close()
    NoProgress().start(RunView())
    NoProgress().close()


def test_a_sharded_runs_eta_leaves_the_other_shards_ids_out() -> None:
    """Shard 0/8: of the 7,200 ids left, only about 900 are this shard's."""
    view = RunView(Counts(archived=100, other_shards=700), total=8000, started=0.0)
    assert eta(view, now=10.0) == pytest.approx(7200 * (1 - 700 / 800) * 10.0 / 100)
