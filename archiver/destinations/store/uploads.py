"""Uploads to an object store that are whole or absent: a file goes up in one PUT, or as a
multipart upload that is aborted at once when its call is cancelled (issue 21), and a stream
of chunks (a run report) is split into one PUT or a multipart upload.

A multipart upload goes through obstore's writer, the one of its APIs that aborts an upload
with its parts in flight: an exception raised inside the writer makes it send the abort (one
small request) and drop the part it was sending, however slow. A cancellation is not enough:
a writer cancelled leaves its upload open (checked against moto), so the cancellation is
turned into UploadCancelled inside it. The one moment that cannot be aborted is the writer's
close, which completes the upload; it is kept to a tiny last part and one small request: the
part size is chosen so the file splits into full parts and a remainder of a few bytes, and an
empty write before the close waits (abortably) for the parts in flight.

Sizes bound the memory (bench/RESULTS.md): UPLOADS uploads at once, each holding its part in
the writer's buffer and one part in flight, a part of MIN_PART to 2 x MIN_PART bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore

log = logging.getLogger("archiver.store")
UPLOAD_CHUNK = 5 << 20  # up to this, one PUT; a part of a multipart upload: S3's floor
MIN_PART = UPLOAD_CHUNK
MAX_PARTS = 10_000  # S3's, Azure's is 50,000: 50 GB at the least
PART_UPLOADS = 1  # parts of one upload in flight
UPLOADS = 4  # uploads at once
READ_BLOCK = 1 << 20  # bytes read from the .part at a time
ABORT_WAIT = 4.0  # seconds a cancelled upload is given to abort (the 5 s of a signal)


class UploadCancelled(Exception):
    """Raised inside obstore's writer when its call is cancelled: the writer then aborts."""


def part_size(size: int) -> int:
    """The part size of a multipart upload of `size` bytes: `size` split into as many full
    parts of at least MIN_PART as fit (at most MAX_PARTS), so that the last part, the one
    the closing of the upload sends, holds the few bytes left over."""
    parts = max(1, min(size // MIN_PART, MAX_PARTS))
    return max(MIN_PART, -(-size // parts) if parts == MAX_PARTS else size // parts)


async def upload_file(store: Any, path: Path, key: str, size: int, attributes: Any) -> None:
    """`path` (`size` bytes) under `key`, whole or not at all; a cancellation aborts it."""
    if size <= UPLOAD_CHUNK:  # one PUT: atomic, nothing to abort
        body = await asyncio.to_thread(path.read_bytes)
        await obstore.put_async(store, key, body, attributes=attributes, use_multipart=False)
        return
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        async with obstore.open_writer_async(
            store, key, attributes=attributes, buffer_size=part_size(size),
            max_concurrency=PART_UPLOADS,
        ) as writer:  # fmt: skip
            try:
                while block := await asyncio.to_thread(handle.read, READ_BLOCK):
                    await writer.write(block)
                await writer.write(b"")  # waits for the parts in flight: abortable
            except asyncio.CancelledError:
                raise UploadCancelled(f"upload of {key} cancelled") from None
    finally:
        handle.close()


async def finished_or_aborted(work: asyncio.Future[None], key: str) -> None:
    """Await `work` (an upload and its check). Cancelled meanwhile: `work` is cancelled too
    (an upload aborts at once) and given ABORT_WAIT to end; if it completed all the same, the
    object is whole and confirmed, and this returns (the caller records it); else the
    cancellation goes on."""
    try:
        await asyncio.shield(work)
        return
    except asyncio.CancelledError:
        work.cancel()
        done, _ = await asyncio.wait([work], timeout=ABORT_WAIT)
        if done and not work.cancelled() and work.exception() is None:
            return
        if not done:
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
