"""URL rules of §8: what may be logged of a presigned URL, and which recording URLs we fetch."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from archiver.errors import ApiRejected


def without_query(url: str) -> str:
    """A presigned URL is a credential for its lifetime: show it only without its query."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_recording_url(url: str, allow_insecure: bool) -> None:
    """https only; plain http only to a loopback host (the fake) or when explicitly allowed."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if allow_insecure or is_loopback(parts.hostname):
            return
        raise ApiRejected(
            f"refusing plain-http recording URL {without_query(url)} "
            "(set allow_insecure_urls to allow it)"
        )
    raise ApiRejected(f"the API returned an unusable recording URL: {without_query(url)!r}")
