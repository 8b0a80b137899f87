"""The OSVI API client: the token, envelopes, error mapping, the rate cap and the 429 gate.

The token is sent per request to the `base_url` origin only, never as a session header (which
aiohttp would carry across a cross-origin redirect): redirects are followed here, by hand, and
only within that origin. aiohttp's exceptions are mapped into archiver.errors in `_send`, the
one place a request is made. Every request is bounded: `api_timeout` for the whole of it,
MAX_BODY for its body (read in pieces, never more; a large one parsed only while no other
is, `parsing`), and an unreachable API ends the run (net/reachability.py) instead of failing
each call in turn. Any text the server sends is masked and escaped before it is shown
(redaction.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from archiver import redaction
from archiver.archive.ids import canonical_uuid
from archiver.errors import (
    ApiBadResponse,
    ApiRejected,
    AuthError,
    ConnectionFault,
    NotAvailable,
    ServerError,
    Throttled,
)
from archiver.net.http import (
    CERTIFICATE_ERRORS,
    Proxies,
    client_session,
    no_answer_reason,
    proxy_refused,
    unresolved,
)
from archiver.net.reachability import Reachability
from archiver.net.retrying import parse_retry_after
from archiver.osvi.limits import Clock, RateLimiter, ThrottleGate
from archiver.osvi.responses import (
    JsonAnswer,
    ListPage,
    RecordingUrl,
    count_of,
    envelope_of,
    lifetime_of,
    shown_text,
)

_MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_BODY = 8 << 20  # an answer is KiBs (a page of 100 calls ~60 KiB): past this, refused
LARGE_ANSWER = 1 << 20  # an answer over this is parsed only while no other one is (parsing)
_READ = 64 << 10
DEFAULT_TIMEOUT = 60.0


def api_session(
    connect_timeout: float, read_timeout: float, limit: int, **options: Any
) -> aiohttp.ClientSession:
    """The session for the API (the token is added per request, never to the session)."""
    return client_session(connect_timeout, read_timeout, limit, **options)


@dataclass(frozen=True)
class Pacing:
    """How the client paces its requests and waits on the API: the rate cap, the pause every
    request shares after a 429, the clock it reads, the API's reachability (None: every
    failure is the request's own, as in unit tests), the proxy, one request's timeout."""

    limiter: RateLimiter
    gate: ThrottleGate
    clock: Clock
    reach: Reachability | None = None
    proxies: Proxies | None = None
    timeout: float = DEFAULT_TIMEOUT


class OsviApi:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        pacing: Pacing,
        token_source: str | None = None,
    ) -> None:
        self._token_source = token_source  # where the token came from: said when refused
        self._session = session
        self._base = base_url.rstrip("/")
        self._origin = urlsplit(self._base)[:2]
        self._token = token
        redaction.add_secret(token)  # whatever echoes it, it is never shown
        self._limiter = pacing.limiter
        self._gate = pacing.gate
        self._clock = pacing.clock
        self._reach = pacing.reach
        self._proxies = pacing.proxies or Proxies()
        self._timeout = pacing.timeout
        self._large = asyncio.Semaphore(1)  # the large answer being parsed (parsing)

    def __repr__(self) -> str:
        return f"OsviApi(base_url={self._base!r}, token=***)"

    async def recording_url(self, call_id: str) -> RecordingUrl:
        """A fresh presigned URL; NotAvailable when the API answers 404."""
        status, body = await self._get(f"/v1/call/{call_id}/recording")
        if status == 404:
            raise NotAvailable(f"no recording: {self._text(body)}")
        data = self._data(body)
        url = data.get("recording_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise ApiBadResponse(f"the recording response has no recording_url: {self._text(body)}")
        expires_in = lifetime_of(data.get("expires_in_seconds"), url)
        return RecordingUrl(call_id, url, expires_in, self._clock())

    async def list_page(self, params: Mapping[str, str]) -> ListPage:
        """One page of `GET /v1/calls`; every field but call_id may be missing or null, and
        an item whose call_id is not a UUID is set aside (`unusable`), never used."""
        status, body = await self._get("/v1/calls", params)
        if status == 404:
            raise ApiRejected(f"the listing was refused: {self._text(body)}", 404)
        envelope = self._envelope(body)
        data, meta = envelope.get("data"), envelope.get("meta")
        if not isinstance(data, list):
            raise ApiBadResponse("unexpected listing response: no data list")
        if not isinstance(meta, dict):  # null or absent: no hints, the pages alone decide
            meta = {}
        items, unusable = [], []
        for item in data:
            raw = item.get("call_id") if isinstance(item, dict) else item
            call_id = canonical_uuid(raw) if isinstance(raw, str) else None
            if call_id is None or not isinstance(item, dict):
                unusable.append(redaction.shorten(repr(raw), 80))
            else:
                items.append({**item, "call_id": call_id})
        return ListPage(
            items,
            count_of(meta.get("total_count")),
            unusable,
            total_pages=count_of(meta.get("total_pages")),
            per_page=count_of(meta.get("per_page")),
        )

    async def transcript(self, call_id: str) -> JsonAnswer | None:
        """`GET /v1/call/{id}/transcript`, unparsed (turns kept as the objects they are);
        None on 404."""
        return await self._answer(f"/v1/call/{call_id}/transcript", "transcript")

    async def detail(self, call_id: str) -> JsonAnswer | None:
        """`GET /v1/call/{id}`, unparsed: None when the API does not know the call (404)."""
        return await self._answer(f"/v1/call/{call_id}", "call")

    async def call(self, call_id: str) -> dict[str, Any] | None:
        """`GET /v1/call/{id}`, parsed in its turn; None when the API does not know it."""
        answer = await self.detail(call_id)
        if answer is None:
            return None
        async with self.parsing(answer):
            return answer.data()

    @contextlib.asynccontextmanager
    async def parsing(self, answer: JsonAnswer) -> AsyncIterator[None]:
        """Held while `answer` is parsed and what it parses to is alive. A large one (over
        LARGE_ANSWER) only while no other large one is: 8 MiB of small JSON objects take
        hundreds of MB parsed, and sixteen calls at once would take GBs; a small one goes
        through at once. Whoever holds it keeps nothing parsed past the `with`."""
        if len(answer.body) <= LARGE_ANSWER:
            yield
            return
        async with self._large:
            yield

    async def _answer(self, path: str, what: str) -> JsonAnswer | None:
        status, body = await self._get(path)
        return None if status == 404 else JsonAnswer(body, what)

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of a 200 or 404; every other answer raises the mapped error."""
        url = f"{self._base}{path}"
        for _ in range(_MAX_REDIRECTS + 1):
            await self._gate.wait()
            await self._limiter.acquire()
            status, headers, body = await self._send(url, params)
            if status in (200, 404):
                self._limiter.speed_up()
                return status, body
            if status in _REDIRECTS and "Location" in headers:
                url = self._same_origin(url, headers["Location"])
                continue
            self._raise_for(status, headers, body)
        raise ApiRejected(f"too many redirects from the API for {path}")

    async def _send(
        self, url: str, params: Mapping[str, str] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        began = self._reach.now() if self._reach else 0.0
        answered = False
        proxy, proxy_headers = self._proxies.for_url(URL(url))
        # The session's bounds on connecting and on silence, and a total for the request.
        bounds = self._session.timeout
        timeout = aiohttp.ClientTimeout(
            total=self._timeout, sock_connect=bounds.sock_connect, sock_read=bounds.sock_read
        )
        try:
            async with self._session.get(
                url,
                params=params,
                headers={"API-Token": self._token, **proxy_headers},
                allow_redirects=False,
                timeout=timeout,
                **proxy,
            ) as response:
                answered = True
                if self._reach:
                    self._reach.answered()
                if response.status == 407:
                    raise proxy_refused(response.headers.get("Proxy-Authenticate"))
                return response.status, response.headers, await _read_capped(response)
        except aiohttp.ClientHttpProxyError as exc:  # the proxy's answer to CONNECT
            if exc.status == 407:
                raise proxy_refused(None) from exc
            reason = f"the proxy could not reach it ({exc.status} {exc.message})"
            raise await self._no_answer_for(reason, began) from exc
        except CERTIFICATE_ERRORS as exc:
            if self._reach:
                self._reach.certificate_refused(str(exc))
            raise ApiRejected(f"TLS with the API refused: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise await self._no_answer(exc, began, answered) from exc

    async def _no_answer(
        self, exc: BaseException, began: float, answered: bool
    ) -> ConnectionFault | ApiRejected:
        if isinstance(exc, aiohttp.InvalidURL):  # a redirect's Location, say
            return ApiRejected(f"the API gave an unusable URL: {exc}")
        reason = no_answer_reason(exc, f"api_timeout ({self._timeout:g} s)")
        if answered:  # cut off while the body came: the API is up, this answer failed
            return ConnectionFault(f"the API's answer broke off: {reason}")
        return await self._no_answer_for(reason, began, unresolved(exc))

    async def _no_answer_for(
        self, reason: str, began: float, unresolved: bool = False
    ) -> ConnectionFault:
        if self._reach is None:
            return ConnectionFault(f"no answer from the API: {reason}")
        outage = await self._reach.no_answer(began, reason, unresolved=unresolved)
        return ConnectionFault(f"no answer from the API: {reason}", outage=outage)

    def _envelope(self, body: bytes) -> dict[str, Any]:
        return envelope_of(body)

    def _data(self, body: bytes) -> Any:
        return envelope_of(body)["data"]

    def _text(self, body: bytes) -> str:
        return shown_text(body)

    def _same_origin(self, url: str, location: str) -> str:
        try:
            target = urljoin(url, location)
            origin = urlsplit(target)[:2]
        except ValueError as exc:
            raise ApiRejected(f"the API redirected to an unusable URL: {exc}") from exc
        if origin != self._origin:
            raise ApiRejected(
                f"the API redirected to another origin ({redaction.shorten(origin[1], 80)}); "
                "not following it with the token"
            )
        return target

    def _raise_for(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        message = f"API answered {status}: {self._text(body)}"
        if status == 401:
            where = (
                f"the token from {self._token_source}"
                if self._token_source
                else "the token (OSVI_API_TOKEN, the file OSVI_API_TOKEN_FILE names, "
                "$CREDENTIALS_DIRECTORY/osvi-api-token, or api_token in the config file)"
            )
            raise AuthError(
                f"the OSVI API rejected {where} (401: {self._text(body)}): replace it there"
            )
        retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
        if status == 429 or (status == 503 and retry_after is not None):
            self._gate.pause(retry_after if retry_after is not None else 1.0)
            self._limiter.slow_down()
            raise Throttled(message, retry_after)
        if status >= 500:
            raise ServerError(message)
        raise ApiRejected(message, status)


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body, refused (unread) past MAX_BODY: a hostile or broken server cannot make us
    hold hundreds of MB (a gzip bomb included: the cap counts decoded bytes)."""
    announced = response.content_length
    if announced is not None and announced > MAX_BODY:
        raise ApiBadResponse(
            f"the API announced a {announced:,}-byte answer (at most {MAX_BODY:,})"
        )
    # One growing buffer, its bytes handed over without a copy: chunks joined at the end
    # would hold each large answer twice.
    buffer = io.BytesIO()
    async for chunk in response.content.iter_chunked(_READ):
        if buffer.tell() + len(chunk) > MAX_BODY:
            raise ApiBadResponse(f"the API sent an answer of more than {MAX_BODY:,} bytes")
        buffer.write(chunk)
    return buffer.getvalue()
