"""glibc's malloc set for what a destination needs: a bucket run's memory bounded by what it
holds, a folder run's large buffers reused instead of mapped afresh each time.

A run allocates and frees buffers of 1 MiB (each disk write, each hash) and 8 MiB (each part
of an upload, a lane's queue) from many threads. glibc serves allocations above its mmap
threshold (128 KiB) with mmap and gives them back on free, but raises that threshold every
time such a block is freed, up to 32 MiB: after the first few, every buffer comes from the heap
instead, freed blocks stay there in pieces, and the resident size grows with the concurrency.
Setting the thresholds explicitly (as MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ would)
turns that dynamic adjustment off. Elsewhere than glibc nothing is done.

- A bucket (`for_bucket`): every block of 256 KiB or more is mapped, and unmapped when freed.
  Measured (40 recordings of 100 MB at --concurrency 32): 398 MiB at peak without, 200 MiB
  with; a bucket run pays nothing measurable (its uploads are its bound) and has a memory
  bound to keep (300 MB).
- A folder (`for_folder`, issue 23): a fresh mapping per buffer is zero-filled by the kernel
  and unmapped again (the 256 KiB setting made 64 x 16 MiB take 1.24 times as long, twice the
  system time). Blocks up to 32 MiB come from the heap, and the heap is given back to the
  system only past 256 MiB free at its top: the buffers of the next writes reuse the last
  ones' memory (system time 0.58-0.78 times on 16 MiB files, measured for the issue).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
BUCKET_MMAP_THRESHOLD = 256 << 10  # a block this large or larger is mmapped, unmapped when freed
FOLDER_MMAP_THRESHOLD = 32 << 20
FOLDER_TRIM_THRESHOLD = 256 << 20  # free memory at the heap's top kept, up to this


def for_bucket() -> bool:
    """Whether the thresholds were set (glibc only; a no-op, False, anywhere else)."""
    return _mallopt((M_MMAP_THRESHOLD, BUCKET_MMAP_THRESHOLD))


def for_folder() -> bool:
    """Whether the thresholds were set (glibc only; a no-op, False, anywhere else)."""
    return _mallopt(
        (M_MMAP_THRESHOLD, FOLDER_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, FOLDER_TRIM_THRESHOLD)
    )


def _mallopt(*settings: tuple[int, int]) -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(option, value)) for option, value in settings)
    except (OSError, AttributeError):
        return False
