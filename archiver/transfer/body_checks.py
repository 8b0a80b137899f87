"""What one recording's body must be, apart from the wire: within the bounds of its attempt
(Pace: max_recording_size, min_speed over min_speed_time), with the digests it is checked
and recorded by (Digests: the sha256 of exactly the bytes in the `.part`; their MD5 against
a plain-MD5 ETag), and what a verified one is (Downloaded)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from yarl import URL

from archiver.errors import (
    BodyIncomplete,
    CallError,
    RecordingRefused,
    RecordingServerError,
    Throttled,
    TooLarge,
    TooSlow,
    UnsafeUrl,
    UrlRefused,
)
from archiver.net.retrying import parse_retry_after
from archiver.net.urls import UrlRules, check_recording_url

DEFAULT_MAX_SIZE = 4 << 30  # a 10-hour call in WAV is ~1.2 GiB
# MD5 (for the ETag check) runs at ~600 MiB/s, SHA-256 at ~1.4 GiB/s: a batch's MD5 goes to
# this pool while its write thread does the SHA-256, so they overlap (1 GiB: 0.66 -> 0.77 of curl).
_MD5_POOL = concurrent.futures.ThreadPoolExecutor(4, "osvi-md5")
_MD5_APART = 256 << 10  # a buffer from which its MD5 runs on a thread of its own
_PLAIN_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class DownloadPolicy:
    """What every download of a run must respect."""

    file_mode: int = 0o600
    rules: UrlRules = field(default_factory=UrlRules)
    max_size: int = DEFAULT_MAX_SIZE  # bytes; past this the call is `too_large`
    min_speed: float = 1024.0  # bytes/s over each min_speed_time, else `too_slow`; 0: none
    min_speed_time: float = 60.0
    answer_timeout: float = 70.0  # seconds until the headers have come (connect + read)


@dataclass(frozen=True, slots=True)
class Downloaded:
    path: Path
    bytes: int
    sha256: str
    content_type: str
    md5_checked: bool = False  # its MD5 matched a plain-MD5 ETag (else none could be checked)


class Digests:
    """The hashes of one body as written. The MD5 only when the ETag is a plain MD5 (known
    from the 200 before any byte): else it could never be checked, and would only cost
    ~1.7 s of CPU per GiB."""

    def __init__(self, etag: str | None = None) -> None:
        self.sha256 = hashlib.sha256()
        plain = _PLAIN_MD5_ETAG.match(etag or "")
        self.md5 = hashlib.md5(usedforsecurity=False) if plain else None

    def update(self, data: bytes) -> None:
        """In the write's thread, after the write: the hashes always cover exactly the bytes
        in the file. Both release the GIL on large buffers, so the MD5 runs beside the
        SHA-256."""
        if self.md5 is None:
            self.sha256.update(data)
            return
        if len(data) < _MD5_APART:  # a hop to another thread costs more than the MD5 itself
            self.md5.update(data)
            self.sha256.update(data)
            return
        md5 = _MD5_POOL.submit(self.md5.update, data)
        self.sha256.update(data)
        md5.result()

    def match(self, etag: str | None) -> bool:
        """Whether the body agrees with a plain-MD5 ETag (any other ETag says nothing)."""
        plain = _PLAIN_MD5_ETAG.match(etag or "")
        return not plain or (
            self.md5 is not None and plain.group(1).lower() == self.md5.hexdigest()
        )


class Pace:
    """The floor under one body's speed and the cap over its size, as bytes arrive: below
    `min_speed` on average over a `min_speed_time` window, `too_slow` (a host trickling a
    byte a second never trips `read_timeout`); past `max_size`, `too_large` (a body with no
    Content-Length could fill the disk)."""

    def __init__(
        self, policy: DownloadPolicy, clock: Callable[[], float], shown: str, already: int
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._shown = shown
        self._since = clock()  # when the window began
        self._bytes = 0  # in this window
        self._body = already  # of the whole body (a resumed one counts what came before)

    def waited(self, seconds: float) -> None:
        """Time spent held back by --bwlimit: left out of the min_speed window."""
        self._since += seconds

    def received(self, count: int) -> None:
        self._body += count
        if self._body > self._policy.max_size:
            raise TooLarge(
                f"{self._shown} sent more than max_recording_size ({self._policy.max_size:,} bytes)"
            )
        self._bytes += count
        now = self._clock()
        elapsed = now - self._since
        if self._policy.min_speed <= 0 or elapsed < self._policy.min_speed_time:
            return
        if self._bytes < self._policy.min_speed * elapsed:
            raise TooSlow(
                f"{self._shown} sent {self._bytes:,} bytes in {elapsed:.1f} s, below min_speed "
                f"({self._policy.min_speed:,.0f} bytes/s over min_speed_time)"
            )
        self._since, self._bytes = now, 0


async def settled(task: asyncio.Task[None]) -> None:
    """Wait for a write, even when cancelled meanwhile; its error (a full disk) still counts."""
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def next_hop(current: URL, location: str, rules: UrlRules) -> URL:
    """Where a redirect leads, checked like the first URL."""
    try:
        joined = current.join(URL(location))
    except (ValueError, UnicodeError) as exc:
        raise UnsafeUrl(f"the recording host redirected to a malformed URL: {exc}") from exc
    return check_recording_url(joined, rules)


def refusal(status: int, shown: str, retry_after: str | None, now: float) -> CallError:
    """What a recording host's answer other than 200 (or a 206 to our Range) means."""
    said = f"recording host answered {status} for {shown}"
    if status == 416:
        return BodyIncomplete(f"{said}: range not satisfiable; starting over")
    if status == 206:
        return BodyIncomplete(f"{said} without our Range request; starting over")
    if status == 403:
        return UrlRefused(f"{said} (expired or refused URL)")
    if status in (429, 503):
        return Throttled(said, parse_retry_after(retry_after, now))
    if status >= 500 or status == 404:
        return RecordingServerError(said)
    return RecordingRefused(said)


def content_range(header: str) -> tuple[int, int | None] | None:
    """`Content-Range: bytes FIRST-LAST/TOTAL` as (FIRST, TOTAL, None for `*`); None when it
    is not one."""
    match = _CONTENT_RANGE.match(header)
    if match is None:
        return None
    return int(match.group(1)), None if match.group(3) == "*" else int(match.group(3))
