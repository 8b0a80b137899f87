"""The Prometheus textfile of `--metrics-file` (monitoring/metrics.py)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.errors import LocalError
from archiver.monitoring import metrics
from archiver.monitoring.counts import Counts
from archiver.monitoring.metrics import METRICS_MODE, RunMetrics, _escape, render, write

COUNTS = Counts(
    archived=7,
    already_archived=5,
    pending=2,
    not_available=1,
    failed=3,
    duplicates=4,
    invalid_rows=6,
    other_shards=9,
    bytes=123_456_789,
)


def run_metrics(**changes: object) -> RunMetrics:
    values: dict[str, object] = {
        "command": "run",
        "counts": COUNTS,
        "seconds": 12.3456,
        "exit_code": 1,
        "finished_at": 1_780_000_000.25,
        "last_success_at": 1_779_990_000.5,
        "shard": None,
    }
    values.update(changes)
    return RunMetrics(**values)  # type: ignore[arg-type]


Samples = dict[str, list[tuple[dict[str, str], float]]]


def parsed(text: str) -> Samples:
    """Family name -> its samples (labels, value); every family a gauge."""
    families: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation
        families[family.name] = [(dict(s.labels), s.value) for s in family.samples]
    return families


def one(families: Samples, name: str) -> tuple[dict[str, str], float]:
    [sample] = families[name]
    return sample


# render


def test_render_has_every_family_with_its_values() -> None:
    families = parsed(render(run_metrics()))
    assert sorted(families) == [
        "osvi_archiver_bytes",
        "osvi_archiver_calls",
        "osvi_archiver_exit_code",
        "osvi_archiver_input_rows_skipped",
        "osvi_archiver_last_success_timestamp_seconds",
        "osvi_archiver_run_duration_seconds",
        "osvi_archiver_run_timestamp_seconds",
    ]
    calls = {labels["status"]: value for labels, value in families["osvi_archiver_calls"]}
    assert calls == {
        "archived": 7,
        "already_archived": 5,
        "already_not_available": 0,
        "pending": 2,
        "not_available": 1,
        "failed": 3,
    }
    assert all(labels["command"] == "run" for labels, _ in families["osvi_archiver_calls"])
    skipped = {
        labels["reason"]: value for labels, value in families["osvi_archiver_input_rows_skipped"]
    }
    assert skipped == {"duplicate": 4, "invalid": 6, "other_shard": 9}
    assert one(families, "osvi_archiver_bytes") == ({"command": "run"}, 123_456_789)
    assert one(families, "osvi_archiver_run_duration_seconds") == ({"command": "run"}, 12.346)
    assert one(families, "osvi_archiver_run_timestamp_seconds")[1] == 1_780_000_000.25
    assert one(families, "osvi_archiver_exit_code") == ({"command": "run"}, 1)
    assert one(families, "osvi_archiver_last_success_timestamp_seconds") == (
        {"command": "run"},
        1_779_990_000.5,
    )


def test_render_writes_whole_numbers_without_a_fraction() -> None:
    text = render(run_metrics(seconds=2.0, finished_at=1_780_000_000.0))
    assert 'osvi_archiver_calls{command="run",status="archived"} 7\n' in text
    assert 'osvi_archiver_bytes{command="run"} 123456789\n' in text
    assert 'osvi_archiver_run_duration_seconds{command="run"} 2\n' in text
    assert 'osvi_archiver_run_timestamp_seconds{command="run"} 1780000000\n' in text
    assert text.endswith("\n")
    assert "# TYPE osvi_archiver_calls gauge\n" in text


def test_render_without_a_last_success_leaves_that_series_out() -> None:
    text = render(run_metrics(last_success_at=None))
    assert "last_success" not in text
    assert "osvi_archiver_last_success_timestamp_seconds" not in parsed(text)


def test_render_labels_every_sample_of_a_shard() -> None:
    families = parsed(render(run_metrics(shard=(3, 8), command="sync")))
    samples = [labels for series in families.values() for labels, _ in series]
    assert len(samples) == 6 + 3 + 5
    assert all(labels["shard"] == "3/8" for labels in samples)
    assert all(labels["command"] == "sync" for labels in samples)


def test_render_without_a_shard_has_no_shard_label() -> None:
    families = parsed(render(run_metrics()))
    assert all("shard" not in labels for series in families.values() for labels, _ in series)


def test_label_values_are_escaped() -> None:
    assert _escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    command = 'r"u\\n\nx'
    families = parsed(render(run_metrics(command=command)))
    assert one(families, "osvi_archiver_exit_code") == ({"command": command}, 1)


# write


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("strict_umask")
def test_write_gives_mode_0644_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "osvi.prom"
    write(path, run_metrics())
    assert METRICS_MODE == 0o644
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == render(run_metrics())
    assert [p.name for p in tmp_path.iterdir()] == ["osvi.prom"]


def test_write_goes_through_a_hidden_temp_file_in_the_same_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "osvi.prom"
    path.write_text("old\n")
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync
    temps: list[str] = []
    seen_at_fsync: list[str] = []

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        temps.append(name)
        return fd, name

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if temps and Path(temps[0]).exists():  # the temp file is complete, not yet renamed
            seen_at_fsync.append(path.read_text())
            assert Path(temps[0]).read_text() == render(run_metrics())

    monkeypatch.setattr("archiver.archive.storage.tempfile.mkstemp", mkstemp)
    monkeypatch.setattr("archiver.archive.storage.os.fsync", fsync)
    write(path, run_metrics())
    [temp] = temps
    assert Path(temp).parent == tmp_path
    assert Path(temp).name.startswith(".osvi.prom.")
    assert temp.endswith(".tmp")
    assert seen_at_fsync == ["old\n"]  # readers saw the old file until the rename
    assert not Path(temp).exists()
    assert path.read_text() == render(run_metrics())


def test_a_failed_render_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "osvi.prom"
    write(path, run_metrics())
    before = path.read_text()

    def broken(_metrics: RunMetrics) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(metrics, "render", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        write(path, run_metrics(exit_code=0))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["osvi.prom"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "osvi.prom"
    write(path, run_metrics())
    before = path.read_text()

    def fsync(_fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr("archiver.archive.storage.os.fsync", fsync)
    with pytest.raises(LocalError, match=r"osvi\.prom"):
        write(path, run_metrics(exit_code=0))
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["osvi.prom"]
