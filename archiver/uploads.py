"""Uploads to an object store that are whole or absent: a multipart upload aborted when its
call is cancelled, and the split of a streamed file into one PUT or a multipart upload.

Sizes bound the memory (bench/RESULTS.md): UPLOADS uploads at once, each holding about two
chunks of UPLOAD_CHUNK (the one read, the one sent); with heap.fix_mmap_threshold, a run of
--concurrency 32 and 100 MB recordings peaks around 200 MiB.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import obstore

log = logging.getLogger("archiver.store")
UPLOAD_CHUNK = 5 << 20  # a part of a multipart upload: S3's floor, 50 GB in its 10,000 parts
PART_UPLOADS = 1  # parts of one upload in flight
UPLOADS = 4  # uploads at once
ABORT_WAIT = 4.0  # seconds a cancelled upload is given to abort (the 5 s of a signal)


class UploadCancelled(Exception):
    """Raised by an upload's source when its call is cancelled: obstore then aborts it."""


async def multipart(store: Any, path: Path, key: str, attributes: dict[str, str]) -> None:
    """A multipart upload of `path`, aborted when the caller is cancelled: the chunks' source
    raises, and obstore aborts an upload whose source fails (cancelling its task instead
    would leave the upload open)."""
    cancelled = False

    async def chunks() -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while True:
                if cancelled:
                    raise UploadCancelled(f"upload of {key} cancelled")
                block = await asyncio.to_thread(handle.read, UPLOAD_CHUNK)
                if not block:
                    return
                yield block
        finally:
            handle.close()

    task = asyncio.ensure_future(
        obstore.put_async(
            store,
            key,
            chunks(),
            attributes=attributes,
            use_multipart=True,
            chunk_size=UPLOAD_CHUNK,
            max_concurrency=PART_UPLOADS,
        )
    )
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        cancelled = True
        done, _ = await asyncio.wait([task], timeout=ABORT_WAIT)
        if done and not task.cancelled() and task.exception() is None:
            return  # completed before the cancellation was seen: whole, recorded late
        if not done:
            log.warning("the upload of %s did not abort in time: the bucket's lifecycle rule "
                        "removes it", key, extra={"event": "upload_not_aborted"})  # fmt: skip
        raise


def first_bytes(chunks: Iterator[bytes], limit: int) -> tuple[bytes, Iterator[bytes] | None]:
    """The first bytes of `chunks` up to about `limit`, and the rest (None: there is none)."""
    held: list[bytes] = []
    size = 0
    for chunk in chunks:
        held.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(held), chunks
    return b"".join(held), None
