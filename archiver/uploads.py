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


async def multipart(
    store: Any, path: Path, key: str, attributes: dict[str, str], abort: asyncio.Event
) -> None:
    """A multipart upload of `path`, aborted once `abort` is set: the chunks' source raises,
    and obstore aborts an upload whose source fails (cancelling its task instead would leave
    the upload open)."""

    async def chunks() -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            while True:
                if abort.is_set():
                    raise UploadCancelled(f"upload of {key} cancelled")
                block = await asyncio.to_thread(handle.read, UPLOAD_CHUNK)
                if not block:
                    return
                yield block
        finally:
            handle.close()

    await obstore.put_async(store, key, chunks(), attributes=attributes, use_multipart=True,
                            chunk_size=UPLOAD_CHUNK, max_concurrency=PART_UPLOADS)  # fmt: skip


async def finished_or_aborted(work: asyncio.Future[None], abort: asyncio.Event, key: str) -> None:
    """Await `work` (an upload and its check). Cancelled meanwhile: `abort` is set (a multipart
    upload aborts at its next chunk) and `work` gets ABORT_WAIT to end; if it completed all
    the same, the object is whole and confirmed, and this returns (the caller records it);
    else the cancellation goes on."""
    try:
        await asyncio.shield(work)
        return
    except asyncio.CancelledError:
        abort.set()
        done, _ = await asyncio.wait([work], timeout=ABORT_WAIT)
        if done and not work.cancelled() and work.exception() is None:
            return
        if not done:
            work.cancel()
            log.warning(
                "the upload of %s did not end in time: the bucket's lifecycle rule removes "
                "what it left",
                key,
                extra={"event": "upload_not_aborted"},
            )
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
