"""URL rules of §8: what may be shown of a presigned URL, and which recording URLs (and which
redirect hops) are fetched at all. Pure.

A recording URL comes from the API and every hop from a redirect of the recording host: both
are untrusted text. Each is parsed with the parser aiohttp itself uses (yarl), then must be
`https` with a well-formed host name or IP address and no credentials in it; plain `http` is
allowed only to this machine while the API itself is on this machine (the fake service), or
with `allow_insecure_urls`. A URL pointing at this machine (loopback, 0.0.0.0, link-local such
as 169.254.169.254, the cloud metadata service) is refused while the API is elsewhere: a
compromised API must not make the tool fetch local services. A URL failing a rule is never
requested: it is the call's `unsafe_url` failure.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from yarl import URL

from archiver.errors import UnsafeUrl

_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII)
_SCHEMES = ("http", "https")


def without_query(url: str) -> str:
    """A presigned URL is a credential for its lifetime: show it only without its query (or
    fragment), and without any `user:password@`. Plain string work: it never fails, whatever
    the text."""
    shown = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = shown.partition("//")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        shown = f"{scheme}//***@{authority.rpartition('@')[2]}{slash}{path}"
    return shown


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host.strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text)
    except ValueError:
        return _ipv4_shorthand(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _numeric_tail(host: str) -> bool:
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    return last.isdigit() or (last.startswith("0x") and len(last) > 2)


def _ipv4_shorthand(text: str) -> ipaddress.IPv4Address | None:
    """`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`: no dotted quad, but what inet_aton,
    and so the system's resolver, reads as an IPv4 address (and a way around the rules)."""
    if not _numeric_tail(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def is_loopback(host: str) -> bool:
    """127/8, ::1, `localhost` and names under `.localhost` (RFC 6761)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def is_this_machine(host: str) -> bool:
    """A host that reaches this machine or its link: loopback, unspecified (0.0.0.0, which
    Linux connects to locally) and link-local addresses."""
    address = _address(host)
    if address is not None and (address.is_unspecified or address.is_link_local):
        return True
    return is_loopback(host)


def _valid_host(host: str) -> bool:
    """An IP address, or a DNS name: labels of letters, digits, `-` and `_`, none empty, at
    most 63 characters each and 253 in all (yarl gives IDNA names in their ASCII form)."""
    if _address(host) is not None:
        return True
    name = host.lower().removesuffix(".")
    if _numeric_tail(name):  # no top-level domain is a number: a malformed address
        return False
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True)
class UrlRules:
    allow_insecure: bool = False  # allow_insecure_urls: plain http anywhere, local targets too
    api_on_this_machine: bool = False  # the API is on loopback (the fake): local http is fine

    @classmethod
    def for_api(cls, base_url: str, allow_insecure: bool) -> UrlRules:
        return cls(allow_insecure, is_loopback(URL(base_url).host or ""))


def check_recording_url(url: str | URL, rules: UrlRules) -> URL:
    """The URL to request, parsed; UnsafeUrl when it breaks a rule (it is then not fetched)."""
    shown = without_query(str(url))
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        scheme, host, _ = parsed.scheme, parsed.raw_host, parsed.port
    except (ValueError, UnicodeError) as exc:
        raise UnsafeUrl(f"malformed recording URL {shown!r}: {exc}") from exc
    if scheme not in _SCHEMES or not host or not _valid_host(host):
        raise UnsafeUrl(f"unusable recording URL {shown!r}: not http(s) with a valid host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UnsafeUrl(f"refusing recording URL {shown!r}: it carries credentials")
    local = is_this_machine(host)
    if local and not (rules.api_on_this_machine or rules.allow_insecure):
        raise UnsafeUrl(
            f"refusing recording URL {shown!r}: it points at this machine while the API "
            "is elsewhere (set allow_insecure_urls to allow it)"
        )
    if scheme == "http" and not (rules.allow_insecure or (local and rules.api_on_this_machine)):
        raise UnsafeUrl(
            f"refusing plain-http recording URL {shown!r} (set allow_insecure_urls to allow it)"
        )
    return parsed
