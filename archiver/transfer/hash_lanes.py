"""Hash lanes: a large body written and hashed off the event loop, in order, without the loop
waiting on any one batch (issue 23).

MD5 is serial within a stream (~760 MiB/s on this machine's CPU) and the slowest of the three
things done to every byte (write, SHA-256, MD5). When each batch went to a thread and the loop
waited for it before handing over the next, the network, the write and the two hashes took
turns. Here each download gets two lanes, each one thread fed the same batches in the order
they arrived: the writer lane writes a batch to the `.part` and updates the SHA-256, the MD5
lane (only when the ETag can be an MD5) updates the MD5. The loop hands a batch to both and
reads on; it waits only while more than `limit` bytes are queued, so a download's memory stays
bounded at every concurrency (a batch is queued once, shared by both lanes).

The guarantees stay those of one write at a time: the lanes take batches in order, so the
digests cover exactly the bytes in the file, in order, once `drain` has returned; a write that
fails stops every later write of the lane (the file never gets a gap), and its error is raised
by `put` or `drain`; a cancelled download drains all the same (the threads cannot be stopped
mid-batch, and the `.part` must not be closed under them) before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archiver.archive.storage import PartFile
    from archiver.transfer.body_checks import Digests

LANE_LIMIT = 8 << 20  # bytes queued per download, at most, before the loop waits


class HashLanes:
    def __init__(
        self,
        part: PartFile,
        digests: Digests,
        on_error: Callable[[OSError], BaseException],
        limit: int | None = None,
    ) -> None:
        self._part = part
        self._digests = digests
        self._on_error = on_error  # an OSError of a write, as the run reports it
        self._limit = LANE_LIMIT if limit is None else limit
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "osvi-write")
        md5 = digests.md5
        self._md5 = concurrent.futures.ThreadPoolExecutor(1, "osvi-md5") if md5 else None
        self._queued: collections.deque[tuple[int, list[asyncio.Future[None]]]] = (
            collections.deque()
        )
        self.held = 0  # bytes handed to the lanes whose batch is not yet known done
        self.start = part.size  # the .part's size when the lanes opened
        self.handed = 0  # bytes handed to the lanes: start + handed is what arrived
        self._failed: BaseException | None = None

    async def put(self, data: bytes) -> None:
        """Hand one batch to the lanes; wait only while more than `limit` bytes are queued."""
        self._raise_failed()
        loop = asyncio.get_running_loop()
        lanes = [loop.run_in_executor(self._writer, self._write, data)]
        md5 = self._digests.md5
        if self._md5 is not None and md5 is not None:
            lanes.append(loop.run_in_executor(self._md5, md5.update, data))
        self._queued.append((len(data), lanes))
        self.held += len(data)
        self.handed += len(data)
        while self.held > self._limit:
            await self._oldest()

    async def drain(self) -> None:
        """Wait until every batch given is written and hashed (cancelled meanwhile: still
        waits, then the cancellation goes on), then let the threads go. A write's error is
        raised here when `put` did not raise it yet."""
        every = [lane for _, lanes in self._queued for lane in lanes]
        pending = list(every)
        cancelled = False
        while pending:
            try:
                await asyncio.wait(pending)
                break
            except asyncio.CancelledError:
                cancelled = True
                pending = [lane for lane in pending if not lane.done()]
        self._queued.clear()
        self.held = 0
        self._writer.shutdown(wait=False)
        if self._md5 is not None:
            self._md5.shutdown(wait=False)
        if cancelled:
            raise asyncio.CancelledError
        self._raise_failed()
        for lane in every:  # an MD5 lane's failure (its thread raised): not lost
            error = None if lane.cancelled() else lane.exception()
            if error is not None:
                raise error

    async def _oldest(self) -> None:
        size, lanes = self._queued[0]
        # Shielded: cancelling the wait must not cancel a batch still queued in its lane
        # (a cancelled one would never be written while later ones are: a gap in the file).
        await asyncio.shield(asyncio.gather(*lanes))
        self._queued.popleft()
        self.held -= size
        self._raise_failed()

    def _write(self, data: bytes) -> None:
        """In the writer lane's thread: nothing more is written once a write failed,
        whatever it raised (a batch skipped would leave a gap)."""
        if self._failed is not None:
            return
        try:
            self._part.write_now(data)
            self._digests.sha256.update(data)
        except Exception as exc:  # recorded, raised on the loop by put or drain
            self._failed = exc

    def _raise_failed(self) -> None:
        failed = self._failed
        if isinstance(failed, OSError):
            raise self._on_error(failed) from failed
        if failed is not None:
            raise failed
