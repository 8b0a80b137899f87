"""destinations/store/heap.py: the glibc tunable that keeps a bucket run's memory bounded."""

from __future__ import annotations

import platform

import pytest

from archiver.destinations.store import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc tunable")
def test_the_mmap_threshold_is_fixed_on_glibc() -> None:
    assert heap.fix_mmap_threshold() is True


def test_elsewhere_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert heap.fix_mmap_threshold() is False
