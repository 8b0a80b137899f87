"""The OSVI API client: the token, envelopes, error mapping, the rate cap and the 429 gate.

The token is sent per request to the `base_url` origin only, never as a session header (which
aiohttp would carry across a cross-origin redirect): redirects are followed here, by hand, and
only within that origin. aiohttp's exceptions are mapped into archiver.errors in `_send`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from archiver.errors import (
    ApiRejected,
    AuthError,
    ConnectionFault,
    NotAvailable,
    ServerError,
    Throttled,
)
from archiver.http import client_session
from archiver.limits import Clock, RateLimiter, ThrottleGate
from archiver.retrying import parse_retry_after

_MAX_REDIRECTS = 3
_PERMANENT_CLIENT_ERRORS = (
    aiohttp.ClientSSLError,
    aiohttp.ServerFingerprintMismatch,
    aiohttp.InvalidURL,
    aiohttp.TooManyRedirects,
)


@dataclass(frozen=True, slots=True)
class RecordingUrl:
    call_id: str
    url: str
    expires_in: float
    received_at: float  # clock() when the API answered

    def usable_until(self) -> float:
        """§5.1: never used once older than its lifetime minus min(60 s, lifetime / 4)."""
        return self.received_at + self.expires_in - min(60.0, self.expires_in / 4)


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[dict[str, Any]]
    total_count: int


def error_text(body: bytes) -> str:
    """The message of either documented error shape, else the raw body, cut short."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("errors"), list):
            return "; ".join(str(e) for e in parsed["errors"])[:300]
        if parsed.get("error") is not None:
            details = parsed.get("details")
            suffix = f" ({json.dumps(details)[:200]})" if details else ""
            return f"{parsed['error']}{suffix}"
    return body[:300].decode("utf-8", "replace").strip() or "(empty body)"


def api_session(connect_timeout: float, read_timeout: float, limit: int) -> aiohttp.ClientSession:
    """The session for the API (the token is added per request, never to the session)."""
    return client_session(connect_timeout, read_timeout, limit)


class OsviApi:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        limiter: RateLimiter,
        gate: ThrottleGate,
        clock: Clock,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._origin = urlsplit(self._base)[:2]
        self._token = token
        self._limiter = limiter
        self._gate = gate
        self._clock = clock

    def __repr__(self) -> str:
        return f"OsviApi(base_url={self._base!r}, token=***)"

    async def recording_url(self, call_id: str) -> RecordingUrl:
        """A fresh presigned URL; NotAvailable when the API answers 404."""
        status, body = await self._get(f"/v1/call/{call_id}/recording")
        if status == 404:
            raise NotAvailable(f"no recording: {self._text(body)}")
        data = self._data(body)
        try:
            url = str(data["recording_url"])
            expires_in = float(data.get("expires_in_seconds") or 900)
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiRejected(f"unexpected recording response: {exc!r}") from exc
        return RecordingUrl(call_id, url, expires_in, self._clock())

    async def list_page(self, params: Mapping[str, str]) -> ListPage:
        """One page of `GET /v1/calls`; every field but call_id may be missing or null."""
        status, body = await self._get("/v1/calls", params)
        if status == 404:
            raise ApiRejected(f"the listing was refused: {self._text(body)}")
        data = self._data(body)
        parsed = json.loads(body)  # _data above proved it is a JSON envelope
        meta = parsed.get("meta") if isinstance(parsed, dict) else None
        if not isinstance(data, list) or not isinstance(meta, dict):
            raise ApiRejected("unexpected listing response: no data list or meta")
        items = [item for item in data if isinstance(item, dict) and item.get("call_id")]
        try:
            total = int(meta.get("total_count", len(items)))
        except (TypeError, ValueError):
            total = len(items)
        return ListPage(items, total)

    async def transcript(self, call_id: str) -> dict[str, Any] | None:
        """`GET /v1/call/{id}/transcript` (turns kept as the objects they are); None on 404."""
        status, body = await self._get(f"/v1/call/{call_id}/transcript")
        if status == 404:
            return None
        data = self._data(body)
        if not isinstance(data, dict):
            raise ApiRejected("unexpected transcript response: data is not an object")
        return data

    async def call(self, call_id: str) -> dict[str, Any] | None:
        """`GET /v1/call/{id}`; None when the API does not know the call (404)."""
        status, body = await self._get(f"/v1/call/{call_id}")
        if status == 404:
            return None
        data = self._data(body)
        if not isinstance(data, dict):
            raise ApiRejected("unexpected call response: data is not an object")
        return data

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
            if status in (301, 302, 303, 307, 308) and "Location" in headers:
                url = self._same_origin(urljoin(url, headers["Location"]))
                continue
            self._raise_for(status, headers, body)
        raise ApiRejected(f"too many redirects from the API for {path}")

    async def _send(
        self, url: str, params: Mapping[str, str] | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        try:
            async with self._session.get(
                url, params=params, headers={"API-Token": self._token}, allow_redirects=False
            ) as response:
                return response.status, response.headers, await response.read()
        except _PERMANENT_CLIENT_ERRORS as exc:
            raise ApiRejected(f"cannot use the API at {self._base}: {type(exc).__name__}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionFault(f"API request failed: {type(exc).__name__}: {exc}") from exc

    def _data(self, body: bytes) -> Any:
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise ApiRejected(f"the API sent a body that is not JSON: {self._text(body)}") from exc
        envelope_ok = isinstance(parsed, dict) and parsed.get("success") is True
        if not envelope_ok or "data" not in parsed:
            raise ApiRejected(f"unexpected API envelope: {self._text(body)}")
        return parsed["data"]

    def _text(self, body: bytes) -> str:
        """The error text of a body, with the token masked should the server echo it."""
        text = error_text(body)
        return text.replace(self._token, "***") if self._token else text

    def _same_origin(self, url: str) -> str:
        if urlsplit(url)[:2] != self._origin:
            raise ApiRejected(
                f"the API redirected to another origin ({urlsplit(url).netloc}); "
                "not following it with the token"
            )
        return url

    def _raise_for(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        message = f"API answered {status}: {self._text(body)}"
        if status == 401:
            raise AuthError(
                f"the OSVI API rejected the token (401: {self._text(body)}); "
                "check OSVI_API_TOKEN or api_token in the config file"
            )
        retry_after = parse_retry_after(headers.get("Retry-After"), self._clock())
        if status == 429 or (status == 503 and retry_after is not None):
            self._gate.pause(retry_after if retry_after is not None else 1.0)
            self._limiter.slow_down()
            raise Throttled(message, retry_after)
        if status >= 500:
            raise ServerError(message)
        raise ApiRejected(message)
