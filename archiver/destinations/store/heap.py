"""Keep the process's memory bounded by what it holds, not by what it once held (glibc).

A run allocates and frees buffers of 1 MiB (each disk write, each hash) and 8 MiB (each part
of an upload) from many threads. glibc serves allocations above its mmap threshold (128 KiB)
with mmap and gives them back on free, but raises that threshold every time such a block is
freed, up to 32 MiB: after the first few, every buffer comes from the heap instead, freed
blocks stay there in pieces, and the resident size grows with the concurrency. Setting the
threshold explicitly (M_MMAP_THRESHOLD, as MALLOC_MMAP_THRESHOLD_ would) turns its dynamic
adjustment off. Elsewhere than glibc nothing is done.

Measured (40 recordings of 100 MB at --concurrency 32): into a bucket, 398 MiB at peak
without, 200 MiB with; into a folder, 303 and 182 MiB. It has a price: every large buffer is
a fresh mapping, zero-filled, and a folder's downloads of 64 x 16 MiB took 1.24 times as long
(twice the system time). A bucket run pays nothing measurable (its uploads are its bound) and
has a memory bound to keep (300 MB), so bucket destinations set it (store/bucket.py); a
folder keeps the speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
THRESHOLD = 256 << 10  # a block this large or larger is mmapped, and unmapped when freed


def fix_mmap_threshold() -> bool:
    """Whether the threshold was set (glibc only; a no-op, False, anywhere else)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False
