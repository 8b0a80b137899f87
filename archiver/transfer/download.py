"""One recording from a presigned URL to a verified `.part`, across attempts; no credentials.

A `Transfer` keeps, between the attempts of one call, the `.part` file and the running sha256
and MD5 of exactly the bytes in it, so a retry on a fresh URL can resume with `Range` and the
hashes stay those of the whole body. Redirects are followed here, by hand, each hop checked
against the same URL rules as the first URL (net/urls.py). Every attempt is bounded: the answer
must start within `answer_timeout`, the body must keep up `min_speed` over each
`min_speed_time` (curl's --speed-limit/--speed-time) and stay under `max_size`. aiohttp's
exceptions are mapped in `_get`, the one place a request is made.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from yarl import URL

from archiver.archive.storage import PartFile, remove_quietly
from archiver.errors import (
    BodyIncomplete,
    ChecksumMismatch,
    ConnectionFault,
    NotAudioOnce,
    RecordingRefused,
    TooLarge,
    UnsafeUrl,
    UrlExpired,
)
from archiver.net.http import (
    CERTIFICATE_ERRORS,
    LocalTarget,
    Proxies,
    no_answer_reason,
    proxy_refused,
    unresolved,
)
from archiver.net.reachability import Hosts, Reachability
from archiver.net.urls import check_recording_url, without_query
from archiver.transfer import audio
from archiver.transfer.bandwidth import Bandwidth
from archiver.transfer.body_checks import (
    Digests,
    Downloaded,
    DownloadPolicy,
    Pace,
    content_range,
    next_hop,
    refusal,
    settled,
)
from archiver.transfer.hash_lanes import HashLanes

WRITE_SIZE = 1 << 20  # aggregate network chunks to this before each disk write
LANES_FROM = 4 << 20  # bytes left of a body from which it goes through hash lanes
_READ_SIZE = 1 << 20
MAX_REDIRECTS = 3  # S3 redirects once at most (a region); a chain longer than this is refused
_REDIRECTS = (301, 302, 303, 307, 308)


class Downloader:
    """Makes a `Transfer` per call, all sharing one credential-free session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: DownloadPolicy,
        clock: Callable[[], float],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        hosts: Hosts | None = None,
        proxies: Proxies | None = None,
        bandwidth: Bandwidth | None = None,
    ) -> None:
        self.bandwidth = bandwidth  # --bwlimit: shared by every transfer, None: no limit
        self.session = session
        self.policy = policy
        self.clock = clock
        self.monotonic = monotonic
        self.hosts = hosts or Hosts(monotonic, asyncio.sleep, max_outage=300.0)
        self.proxies = proxies or Proxies()

    def transfer(
        self, destination: Callable[[str], Awaitable[tuple[Path, Path]]], who: str = ""
    ) -> Transfer:
        """The transfer of call `who` (named to the hosts' Reachability)."""
        return Transfer(self, destination, who)


class Transfer:
    """The bytes of one call across its attempts. `destination(ext)` names the final file
    and the `.part` that receives it."""

    def __init__(
        self,
        downloader: Downloader,
        destination: Callable[[str], Awaitable[tuple[Path, Path]]],
        who: str = "",
    ) -> None:
        self._of = downloader
        self._who = who
        self._policy = downloader.policy
        self._destination = destination
        self._part: PartFile | None = None
        self.final: Path | None = None
        self._reset_hashes()
        self.total: int | None = None
        self.etag: str | None = None
        self.content_type = ""
        self._held = 0  # bytes received and not yet handed to a write
        self._lanes: HashLanes | None = None  # a large body's lanes, while it is received
        self._answered = False  # whether the request in progress got its headers

    def _reset_hashes(self) -> None:
        self._digests = Digests()

    @property
    def received(self) -> int:
        return self._part.size if self._part else 0

    @property
    def arrived(self) -> int:
        """Bytes in the `.part` plus those held for its next write or in its lanes: what a
        display shows."""
        lanes = self._lanes
        if lanes is not None:  # the writer thread moves `received` while the lanes go
            return lanes.start + lanes.handed + self._held
        return self.received + self._held

    async def fetch(self, url: str, usable_until: float = math.inf) -> None:
        """One attempt: resume when bytes are held and the host honours Range, else restart.
        Redirects are followed, each hop passing the URL rules; none once the URL is too old
        to use (`usable_until`, on the wall clock)."""
        target = check_recording_url(url, self._policy.rules)
        for _ in range(MAX_REDIRECTS + 1):
            if self._of.clock() > usable_until:
                raise UrlExpired(f"the URL for {without_query(url)} was too old to use")
            location = await self._get(target)
            if location is None:
                return
            target = next_hop(target, location, self._policy.rules)
        raise RecordingRefused(f"more than {MAX_REDIRECTS} redirects from {without_query(url)}")

    async def _get(self, target: URL) -> str | None:
        """One request: its body received into the `.part`, or the Location it redirects to.
        Every failure is mapped here, and each one that may be the network's rather than this
        request's goes to the host's Reachability: an outage costs the call no attempt."""
        host = self._of.hosts.of(target)
        shown = without_query(str(target))
        began, self._answered = host.now(), False
        try:
            return await self._request(target, host)
        except aiohttp.ClientHttpProxyError as exc:  # the proxy's answer to CONNECT
            if exc.status == 407:
                raise proxy_refused(None) from exc
            reason = f"the proxy could not reach it ({exc.status} {exc.message})"
            raise await self._no_answer(host, began, reason, shown) from exc
        except CERTIFICATE_ERRORS as exc:
            host.certificate_refused(str(exc), who=self._who)
            raise RecordingRefused(f"TLS with {shown} refused: {exc}") from exc
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, LocalTarget):
                raise UnsafeUrl(
                    f"refusing recording URL {shown!r}: {exc.os_error} while the API is "
                    "elsewhere (set allow_insecure_urls to allow it)"
                ) from exc
            reason = no_answer_reason(exc, "answer_timeout")
            raise await self._no_answer(host, began, reason, shown, unresolved(exc)) from exc
        except aiohttp.InvalidURL as exc:
            raise UnsafeUrl(f"cannot fetch {shown}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            deadline = f"answer_timeout ({self._policy.answer_timeout:g} s)"
            reason = no_answer_reason(exc, deadline)
            if not self._answered:
                raise await self._no_answer(host, began, reason, shown) from exc
            # The host answered, then the body stalled or broke off: one attempt of this call
            # (were it the network, the retry's request for a fresh URL waits it out, free).
            if isinstance(exc, aiohttp.ClientPayloadError):
                raise BodyIncomplete(f"body cut short from {shown}: {exc}") from exc
            raise ConnectionFault(f"download from {shown} broke off: {reason}") from exc

    async def _no_answer(
        self, host: Reachability, began: float, reason: str, shown: str, unresolved: bool = False
    ) -> ConnectionFault:
        outage = await host.no_answer(began, reason, unresolved=unresolved, who=self._who)
        return ConnectionFault(f"no answer from {shown}: {reason}", outage=outage)

    async def _request(self, target: URL, host: Reachability) -> str | None:
        headers = {"Accept-Encoding": "identity"}  # the bytes as stored, never re-encoded
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
        proxy, proxy_headers = self._of.proxies.for_url(target)
        async with asyncio.timeout(self._policy.answer_timeout):  # headers trickled included
            response = await self._of.session.get(
                target, headers={**headers, **proxy_headers}, allow_redirects=False, **proxy
            )
        async with response:
            if response.status == 407:  # from a proxy, for a plain-http URL
                raise proxy_refused(response.headers.get("Proxy-Authenticate"))
            self._answered = True
            host.answered()
            if response.status in _REDIRECTS and "Location" in response.headers:
                return response.headers["Location"]
            shown = without_query(str(target))
            await self._accept(response, shown)
            await self._receive(response, target)
            return None

    async def _accept(self, response: aiohttp.ClientResponse, shown: str) -> None:
        status = response.status
        if status == 206 and self.received:
            await self._check_resume(response)
        elif status == 200:
            await self._restart()
            self.total = response.content_length
            self.etag = response.headers.get("ETag")
            self._digests = Digests(self.etag)
            self.content_type = audio.media_type(response.headers.get("Content-Type"))
        else:
            await self._refuse(response, shown)
        if self.total is not None and self.total > self._policy.max_size:
            raise TooLarge(
                f"{shown} holds {self.total:,} bytes, over max_recording_size "
                f"({self._policy.max_size:,})"
            )

    async def _check_resume(self, response: aiohttp.ClientResponse) -> None:
        got = content_range(response.headers.get("Content-Range", ""))
        same_object = response.headers.get("ETag") == self.etag
        if got is None or got[0] != self.received or not same_object:
            await self._restart()
            raise BodyIncomplete("the host answered a different range or object; starting over")
        self.total = got[1] if got[1] is not None else self.total

    async def _refuse(self, response: aiohttp.ClientResponse, shown: str) -> None:
        if response.status == 416:
            await self._restart()  # the range we asked is past the object: from its start
        retry_after = response.headers.get("Retry-After")
        raise refusal(response.status, shown, retry_after, self._of.clock())

    async def _restart(self) -> None:
        """Drop what is held: the next bytes are the body from its first byte."""
        if self._part is not None:
            await self._part.close()
            await remove_quietly(self._part.path)
            self._part = None
        self._reset_hashes()

    async def _receive(self, response: aiohttp.ClientResponse, target: URL) -> None:
        """Read the body. A small one is written and hashed in a thread a buffer at a time
        while the next is read (one write in flight, so the file stays in order); a large one
        (LANES_FROM and more left, or no length) goes through hash lanes (hash_lanes.py): the
        loop never waits on a batch, the write and the two hashes each run on a thread."""
        shown = without_query(str(target))
        pending: list[bytes] = []
        held = 0
        writing: asyncio.Task[None] | None = None
        pace = Pace(self._policy, self._of.monotonic, shown, self.received)
        try:
            async for chunk in response.content.iter_chunked(_READ_SIZE):
                pending.append(chunk)
                held += len(chunk)
                self._held = held
                pace.received(len(chunk))
                if self._of.bandwidth is not None:  # --bwlimit: the run's choice, not slowness
                    pace.waited(await self._of.bandwidth.take(len(chunk)))
                if self._part is None and held < audio.SNIFF_LEN:
                    continue
                if self._part is None:
                    await self._open(b"".join(pending)[: audio.SNIFF_LEN], target)
                if held >= WRITE_SIZE:
                    batch, pending, held = b"".join(pending), [], 0
                    self._held = 0
                    writing = await self._hand_over(batch, writing)
            if self._part is None:
                await self._open(b"".join(pending), target)
        finally:
            self._held = 0
            # Keep what arrived before a fault: the next attempt resumes after it.
            await self._flush(pending, writing)

    async def _hand_over(
        self, batch: bytes, writing: asyncio.Task[None] | None
    ) -> asyncio.Task[None] | None:
        """A full buffer to its write: the lanes once the body is large, else a thread (the
        write in flight, if any, finished first: one at a time keeps the file in order)."""
        if self._lanes is None and self._large():
            self._lanes = self._open_lanes()
        if writing is not None:
            await settled(writing)
        if self._lanes is not None:
            await self._lanes.put(batch)
            return None
        return asyncio.ensure_future(self._write(batch))

    async def _flush(self, pending: list[bytes], writing: asyncio.Task[None] | None) -> None:
        """Whatever arrived, written and hashed before the attempt ends, even when cancelled
        or failed: the `.part` and the digests then hold exactly the same bytes."""
        if writing is not None:
            await settled(writing)
        lanes, self._lanes = self._lanes, None
        if lanes is not None:
            try:
                if pending:
                    await lanes.put(b"".join(pending))
            finally:
                await lanes.drain()
        elif pending and self._part is not None:
            await self._write(b"".join(pending))

    def _large(self) -> bool:
        """Whether what is left of the body is worth its own threads."""
        return self.total is None or self.total - self.received >= LANES_FROM

    def _open_lanes(self) -> HashLanes:
        part = self._part
        assert part is not None
        return HashLanes(part, self._digests, lambda exc: part.write_error(exc, self.total))

    async def _open(self, head: bytes, target: URL) -> None:
        if not audio.is_audio(head, self.content_type):
            raise NotAudioOnce(
                f"{without_query(str(target))} sent {self.content_type or 'untyped'} bytes "
                f"that are not audio (starts with {head[:12]!r})"
            )
        ext = audio.extension(self.content_type, head, target.path)
        self.final, part = await self._destination(ext)
        self._part = await PartFile.create(part, self._policy.file_mode)

    async def _write(self, data: bytes) -> None:
        assert self._part is not None
        await self._part.write(data, self.total, also=self._digests.update)

    def verify(self) -> None:
        """Length against Content-Length/Content-Range, then a plain-MD5 ETag."""
        if self.total is not None and self.received != self.total:
            raise BodyIncomplete(f"received {self.received} of {self.total} bytes")
        if not self._digests.match(self.etag):
            raise ChecksumMismatch("the body's MD5 differs from its ETag; starting over")

    async def commit(
        self, publish: Callable[[PartFile, Downloaded], Awaitable[None]]
    ) -> Downloaded:
        """Hand the verified `.part` to `publish` (destinations/base.py: a rename into place, or an
        upload), which puts it under the final name or raises."""
        assert self._part is not None
        assert self.final is not None
        done = Downloaded(
            self.final,
            self._part.size,
            self._digests.sha256.hexdigest(),
            self.content_type,
            md5_checked=self._digests.md5 is not None,  # verify() matched it to the ETag
        )
        await publish(self._part, done)
        self._part = None
        return done

    async def discard(self) -> None:
        """Remove the `.part` (call given up, cancelled, or verified wrong)."""
        await self._restart()
