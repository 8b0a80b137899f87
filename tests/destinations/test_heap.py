"""destinations/heap.py: the glibc tunables a bucket run (bounded memory) and a folder run
(buffers reused) set."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from archiver.destinations import heap
from archiver.destinations.folder import LocalFolder

SET = [heap.for_bucket, heap.for_folder]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc tunable")
@pytest.mark.parametrize("tune", SET, ids=["bucket", "folder"])
def test_the_thresholds_are_set_on_glibc(tune: object) -> None:
    assert callable(tune)
    assert tune() is True


@pytest.mark.parametrize("tune", SET, ids=["bucket", "folder"])
def test_elsewhere_nothing_is_done(monkeypatch: pytest.MonkeyPatch, tune: object) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert callable(tune)
    assert tune() is False


def test_a_folder_run_sets_its_thresholds_when_it_prepares(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    called: list[str] = []

    def for_folder() -> bool:
        called.append("folder")
        return True

    monkeypatch.setattr(heap, "for_folder", for_folder)
    LocalFolder(tmp_path).prepare()
    assert called == ["folder"]
