"""The one place aiohttp client sessions are built: the API's and the recording host's differ
only in the options they add (see api.api_session and download.download_session)."""

from __future__ import annotations

from typing import Any

import aiohttp


def client_session(
    connect_timeout: float, read_timeout: float, limit: int, **options: Any
) -> aiohttp.ClientSession:
    """No default headers (credentials go per request), no cookies, proxies from the standard
    environment variables, at most `limit` connections. `total=None`: a long download must not
    die at a total deadline; `sock_read` bounds the silence instead."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=limit),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=True,
        **options,
    )
