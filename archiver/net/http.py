"""The one place aiohttp client sessions are built, and the proxy each request goes through.

Sessions never `trust_env`: aiohttp would then read ~/.netrc too and send its `Authorization`
to any host (a presigned S3 URL answers 400, and the password leaks to a third party), and it
would send loopback traffic (the fake, a token in clear) through HTTP_PROXY. Instead the proxy
variables are read once here, as urllib reads them (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, lower
case first), and each request is given its proxy: none for a loopback host or a host NO_PROXY
names; the proxy's credentials travel in `Proxy-Authorization` to the proxy alone.
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from archiver import redaction
from archiver.errors import Unavailable, UsageError
from archiver.net.urls import is_loopback, is_this_machine, without_query

_PROXIED = ("http", "https")


@dataclass(frozen=True)
class Proxy:
    url: URL  # without credentials
    headers: Mapping[str, str] | None  # Proxy-Authorization, when the variable had user:password


@dataclass(frozen=True)
class Proxies:
    """The proxy for each scheme, and the NO_PROXY list, as read from the environment."""

    by_scheme: Mapping[str, Proxy] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)  # as urllib.getproxies gives

    @classmethod
    def from_environment(cls) -> Proxies:
        variables = urllib.request.getproxies_environment()
        return cls({s: _proxy(s, variables[s]) for s in _PROXIED if variables.get(s)}, variables)

    def for_url(self, url: URL) -> tuple[dict[str, Any], dict[str, str]]:
        """How a request to `url` goes: the `proxy=`/`proxy_headers=` arguments (none:
        direct), and headers to add to the request itself. The proxy's credentials go in the
        CONNECT of an https request; a plain-http request is sent to the proxy whole, so they
        go in its own headers (aiohttp would take them only from its deprecated proxy_auth)."""
        host = url.host or ""
        proxy = self.by_scheme.get(url.scheme)
        if proxy is None or is_loopback(host):
            return {}, {}
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if self.variables.get("no") and bypass(host, self.variables):
            return {}, {}
        if url.scheme == "https":
            return {"proxy": proxy.url, "proxy_headers": proxy.headers}, {}
        return {"proxy": proxy.url}, dict(proxy.headers or {})


def _proxy(scheme: str, value: str) -> Proxy:
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"  # `proxy:3128`, as curl reads it
    try:
        url = URL(text)
        host = url.host
    except ValueError:
        host = None
    if host is None or url.scheme != "http":
        head, at, tail = text.rpartition("@")
        shown = f"{head.split('//', 1)[0]}//***@{tail}" if at else text  # no password shown
        shown = without_query(shown)
        raise UsageError(
            f"{scheme.upper()}_PROXY={shown!r}: use an http:// proxy URL such as "
            "http://proxy.example:3128 (https:// and socks proxies are not supported)"
        )
    headers = None
    if url.raw_user is not None:
        redaction.add_secret(url.password)
        auth = aiohttp.encode_basic_auth(url.user or "", url.password or "")
        headers = {"Proxy-Authorization": auth}
    return Proxy(url.with_user(None), headers)


class LocalTarget(OSError):
    """A recording host's name leads to this machine while the API is elsewhere."""


class LocalGuard(AbstractResolver):
    """Resolves as `inner` does, and refuses a name that leads to this machine (a DNS name
    for 127.0.0.1, 169.254.169.254 or 0.0.0.0: a literal address is refused by the URL rules
    already) unless the API's own host leads there too (the fake service) or local targets
    are allowed (allow_insecure_urls). The check is on the addresses connected to, so a name
    that resolves elsewhere the first time and here the next cannot slip through. aiohttp
    reports the refusal as a DNS error whose `os_error` is a LocalTarget."""

    def __init__(self, inner: AbstractResolver, api_host: str, *, allow: bool) -> None:
        self._inner = inner
        self._api_host = api_host
        self._allow = allow
        self._api_local: bool | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._allow:
            return found
        local = [r["host"] for r in found if is_this_machine(r["host"])]
        if local and not await self._api_is_local():
            raise LocalTarget(f"{host} leads to this machine ({local[0]})")
        return found

    async def _api_is_local(self) -> bool:
        if self._api_local is None:
            try:
                answers = await self._inner.resolve(self._api_host, 443)
            except OSError:
                answers = []
            is_local = is_loopback(self._api_host) or (
                bool(answers) and all(is_this_machine(r["host"]) for r in answers)
            )
            self._api_local = is_local
        return self._api_local

    async def close(self) -> None:
        await self._inner.close()


def guarded_resolver(inner: AbstractResolver | None, api_url: str, *, allow: bool) -> LocalGuard:
    """The recording session's resolver: `inner` (the system's by default) behind LocalGuard."""
    return LocalGuard(inner or DefaultResolver(), URL(api_url).host or "", allow=allow)


def client_session(
    connect_timeout: float,
    read_timeout: float,
    limit: int,
    *,
    resolver: AbstractResolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> aiohttp.ClientSession:
    """No default headers (credentials go per request), no cookies, no netrc, at most `limit`
    connections. `total=None`: a long download must not die at a total deadline; `sock_read`
    bounds the silence instead (and transfer/download.py the speed, osvi/api.py each API request). A
    `resolver` and an `ssl_context` are for tests (names without a real DNS look-up, a test
    CA); by default TLS is verified against the system's CAs (SSL_CERT_FILE, SSL_CERT_DIR)."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(
            limit=limit, resolver=resolver, ssl=True if ssl_context is None else ssl_context
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        **options,
    )


# Errors that will not clear by waiting: the certificate (or its host name) was refused. Other
# TLS errors (an EOF in the handshake from a load balancer or a proxy) are transient.
CERTIFICATE_ERRORS = (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch)
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def unresolved(exc: BaseException) -> bool:
    """A DNS answer that the name does not exist (a typo), not a resolver that is down
    (EAI_AGAIN: the network is, say, not up yet after boot)."""
    if not isinstance(exc, aiohttp.ClientConnectorDNSError):
        return False
    cause = exc.os_error
    return not isinstance(cause, socket.gaierror) or cause.errno in _NO_SUCH_NAME


def proxy_refused(challenge: str | None) -> Unavailable:
    """A proxy's 407: wrong or missing credentials. Never retried (like a 401): a retry is
    one more failed login, and a directory account behind the proxy locks after a few."""
    how = f" (it asks for {redaction.shorten(challenge, 60)})" if challenge else ""
    return Unavailable(
        f"the proxy refused our credentials (407 Proxy Authentication Required{how}): check "
        "the user and password in HTTPS_PROXY / HTTP_PROXY"
    )


def no_answer_reason(exc: BaseException, deadline: str) -> str:
    """Why a request got no (whole) answer, in words, keeping the library's own reason (a
    certificate's, a resolver's: it holds no secret). `deadline` names the total bound."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no connection in time (connect_timeout, or {deadline})"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "no data within read_timeout"
    if isinstance(exc, TimeoutError):
        return f"no answer within {deadline}"
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def download_session(
    connect_timeout: float, read_timeout: float, limit: int, **options: Any
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
        **options,
    )
