"""One recording from a presigned URL to a verified `.part`, across attempts; no credentials.

A `Transfer` keeps, between the attempts of one call, the `.part` file and the running sha256
and MD5 of exactly the bytes in it, so a retry on a fresh URL can resume with `Range` and the
hashes stay those of the whole body. aiohttp's exceptions are mapped in `_map_errors`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from archiver import audio
from archiver.errors import (
    ApiRejected,
    BodyIncomplete,
    ChecksumMismatch,
    ConnectionFault,
    NotAudioOnce,
    ServerError,
    Throttled,
    UrlRefused,
)
from archiver.http import client_session
from archiver.retrying import parse_retry_after
from archiver.storage import PartFile, remove_quietly
from archiver.urls import without_query

WRITE_SIZE = 1 << 20  # aggregate network chunks to this before each disk write
_READ_SIZE = 1 << 20
# MD5 (for the ETag check) runs at ~600 MiB/s, SHA-256 at ~1.4 GiB/s: a batch's MD5 goes to
# this pool while its write thread does the SHA-256, so they overlap (1 GiB: 0.66 -> 0.77 of curl).
_MD5_POOL = concurrent.futures.ThreadPoolExecutor(4, "osvi-md5")
_PLAIN_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def download_session(
    connect_timeout: float, read_timeout: float, limit: int
) -> aiohttp.ClientSession:
    """For presigned URLs: no credentials, bytes exactly as stored (no decompression)."""
    return client_session(
        connect_timeout,
        read_timeout,
        limit,
        auto_decompress=False,
        # aiohttp pauses the socket whenever this much is unread (64 KiB by default): large
        # reads keep a fast stream flowing instead of stopping every 64 KiB.
        read_bufsize=4 << 20,
    )


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    bytes: int
    sha256: str
    content_type: str


class Downloader:
    """Makes a `Transfer` per call, all sharing one credential-free session."""

    def __init__(
        self, session: aiohttp.ClientSession, file_mode: int, clock: Callable[[], float]
    ) -> None:
        self._session = session
        self._file_mode = file_mode
        self._clock = clock

    def transfer(self, destination: Callable[[str], Awaitable[tuple[Path, Path]]]) -> Transfer:
        return Transfer(self._session, destination, self._file_mode, self._clock)


class Transfer:
    """The bytes of one call across its attempts. `destination(ext)` names the final file
    and the `.part` that receives it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        destination: Callable[[str], Awaitable[tuple[Path, Path]]],
        file_mode: int,
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._destination = destination
        self._file_mode = file_mode
        self._clock = clock
        self._part: PartFile | None = None
        self.final: Path | None = None
        self._reset_hashes()
        self.total: int | None = None
        self.etag: str | None = None
        self.content_type = ""
        self._held = 0  # bytes received and not yet handed to a write

    def _reset_hashes(self) -> None:
        self._sha256 = hashlib.sha256()
        # Only when the ETag is a plain MD5 (known from the 200 before any byte): else an MD5
        # could never be checked, and would only cost ~1.7 s of CPU per GiB.
        self._md5: hashlib._Hash | None = None

    @property
    def received(self) -> int:
        return self._part.size if self._part else 0

    @property
    def arrived(self) -> int:
        """Bytes in the `.part` plus those held for its next write: what a display shows."""
        return self.received + self._held

    async def fetch(self, url: str) -> None:
        """One attempt: resume when bytes are held and the host honours Range, else restart."""
        headers = {"Range": f"bytes={self.received}-"} if self.received else {}
        async with _map_errors(url), self._session.get(url, headers=headers) as response:
            await self._accept(response, url)
            await self._receive(response, url)

    async def _accept(self, response: aiohttp.ClientResponse, url: str) -> None:
        status = response.status
        if status == 206 and self.received:
            await self._check_resume(response)
        elif status == 200:
            await self._restart()
            self.total = response.content_length
            self.etag = response.headers.get("ETag")
            if _PLAIN_MD5_ETAG.match(self.etag or ""):
                self._md5 = hashlib.md5(usedforsecurity=False)
            self.content_type = audio.media_type(response.headers.get("Content-Type"))
        else:
            await self._refuse(response, url)

    async def _check_resume(self, response: aiohttp.ClientResponse) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        same_object = response.headers.get("ETag") == self.etag
        if match is None or int(match.group(1)) != self.received or not same_object:
            await self._restart()
            raise BodyIncomplete("the host answered a different range or object; starting over")
        if match.group(3) != "*":
            self.total = int(match.group(3))

    async def _refuse(self, response: aiohttp.ClientResponse, url: str) -> None:
        status = response.status
        shown = f"recording host answered {status} for {without_query(url)}"
        if status == 416:
            await self._restart()
            raise BodyIncomplete(f"{shown}: range not satisfiable; starting over")
        if status == 206:
            raise BodyIncomplete(f"{shown} without our Range request; starting over")
        if status == 403:
            raise UrlRefused(f"{shown} (expired or refused URL)")
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock())
            raise Throttled(shown, retry_after)
        if status >= 500 or status == 404:
            raise ServerError(shown)
        raise ApiRejected(shown)

    async def _restart(self) -> None:
        """Drop what is held: the next bytes are the body from its first byte."""
        if self._part is not None:
            await self._part.close()
            await remove_quietly(self._part.path)
            self._part = None
        self._reset_hashes()

    async def _receive(self, response: aiohttp.ClientResponse, url: str) -> None:
        """Read the body; each full buffer is written and hashed in a thread while the next
        one is read (one write in flight at a time, so the file stays in order)."""
        pending: list[bytes] = []
        held = 0
        writing: asyncio.Task[None] | None = None
        try:
            async for chunk in response.content.iter_chunked(_READ_SIZE):
                pending.append(chunk)
                held += len(chunk)
                self._held = held
                if self._part is None and held < audio.SNIFF_LEN:
                    continue
                if self._part is None:
                    await self._open(b"".join(pending)[: audio.SNIFF_LEN], url)
                if held >= WRITE_SIZE:
                    if writing is not None:
                        await writing
                    batch, pending, held = b"".join(pending), [], 0
                    self._held = 0
                    writing = asyncio.ensure_future(self._write(batch))
            if self._part is None:
                await self._open(b"".join(pending), url)
        finally:
            self._held = 0
            # Keep what arrived before a fault: the next attempt resumes after it.
            if writing is not None:
                await _settled(writing)
            if pending and self._part is not None:
                await self._write(b"".join(pending))

    async def _open(self, head: bytes, url: str) -> None:
        if not audio.is_audio(head, self.content_type):
            raise NotAudioOnce(
                f"{without_query(url)} sent {self.content_type or 'untyped'} bytes that are "
                f"not audio (starts with {head[:12]!r})"
            )
        ext = audio.extension(self.content_type, head, urlsplit(url).path)
        self.final, part = await self._destination(ext)
        self._part = await PartFile.open(part, self._file_mode, append=False)

    async def _write(self, data: bytes) -> None:
        assert self._part is not None
        await self._part.write(data, self.total, also=self._hash)

    def _hash(self, data: bytes) -> None:
        """In the write's thread, after the write: the hashes always cover exactly the bytes
        in the file. Both release the GIL on large buffers, so the MD5 runs beside the SHA-256."""
        if self._md5 is None:
            self._sha256.update(data)
            return
        md5 = _MD5_POOL.submit(self._md5.update, data)
        self._sha256.update(data)
        md5.result()

    def verify(self) -> None:
        """Length against Content-Length/Content-Range, then a plain-MD5 ETag."""
        if self.total is not None and self.received != self.total:
            raise BodyIncomplete(f"received {self.received} of {self.total} bytes")
        match = _PLAIN_MD5_ETAG.match(self.etag or "")
        if match and (self._md5 is None or match.group(1).lower() != self._md5.hexdigest()):
            raise ChecksumMismatch("the body's MD5 differs from its ETag; starting over")

    async def commit(self) -> Downloaded:
        """fsync, rename to the final name, fsync the folder."""
        assert self._part is not None
        assert self.final is not None
        size = self._part.size
        await self._part.commit(self.final)
        self._part = None
        return Downloaded(self.final, size, self._sha256.hexdigest(), self.content_type)

    async def discard(self) -> None:
        """Remove the `.part` (call given up, cancelled, or verified wrong)."""
        await self._restart()


async def _settled(task: asyncio.Task[None]) -> None:
    """Wait for a write, even when cancelled meanwhile; its error (a full disk) still counts."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


@contextlib.asynccontextmanager
async def _map_errors(url: str) -> AsyncIterator[None]:
    shown = without_query(url)
    try:
        yield
    except aiohttp.ClientPayloadError as exc:
        raise BodyIncomplete(f"body cut short from {shown}: {exc}") from exc
    except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch, aiohttp.InvalidURL) as exc:
        raise ApiRejected(f"cannot fetch {shown}: {type(exc).__name__}") from exc
    except TimeoutError as exc:
        raise ConnectionFault(f"no data from {shown} within the read timeout") from exc
    except aiohttp.ClientError as exc:
        raise ConnectionFault(f"download from {shown} failed: {type(exc).__name__}") from exc
