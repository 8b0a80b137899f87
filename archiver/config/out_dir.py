"""Where an archive lives: a local folder, or an object store's `scheme://bucket/prefix`.

`out_dir` takes either. A store URL is parsed here, strictly: one of the three schemes, a
bucket, and a prefix of plain segments (no `.`/`..`, no empty segment, no query, fragment,
port or user). Credentials never go in the URL: they come from the store's own environment
and provider chains (README, "Destinations"), so the URL can be shown and logged as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SCHEMES = {"s3": "S3", "gs": "Google Cloud Storage", "az": "Azure Blob Storage"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# S3's and GCS's bucket names, Azure's container names: lower case, digits, `.`, `-`, `_`.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# No control character, backslash or `%` (the store's client would decode `%2e%2e` into `..`).
_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f\\%]+$")
# What a user typing `s3:/bucket` or `s3//bucket` meant: a store, not a folder named `s3:`.
_NEAR_URL = re.compile(r"^(s3|gs|az)(:/?|//)[^/]", re.IGNORECASE)


@dataclass(frozen=True)
class StoreUrl:
    """An object-store destination: `scheme://bucket/prefix` (prefix without slashes around
    it, '' for the bucket's top)."""

    scheme: str
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, where: str = "") -> str:
        """The name of this destination's local folder under `state_dir`: readable, and
        unique per destination (two prefixes of one bucket never share a state, nor one
        bucket name at two endpoints or accounts: `where`)."""
        digest = hashlib.sha256(f"{self}|{where}".encode()).hexdigest()[:16]
        readable = re.sub(r"[^a-z0-9-]+", "-", f"{self.bucket}-{self.prefix}".lower())
        return f"{self.scheme}-{readable.strip('-')[:60]}-{digest}"


def is_store_url(text: str) -> bool:
    return bool(_URL.match(text))


def shown_url(text: str) -> str:
    """A URL as a message may show it: without its query and fragment (a presigned URL's
    query is a credential) nor any `user:password@`."""
    shown = re.split(r"[?#]", text, maxsplit=1)[0]
    return re.sub(r"^([^/]*//)[^/@]*@", r"\1***@", shown)


def parse_store_url(text: str) -> StoreUrl:
    """A store URL, or ValueError saying what is wrong with it; the URL is shown in it
    without its query or fragment, which could hold a credential."""
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    shown = repr(shown_url(text))
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"{shown}: unknown scheme {parts.scheme!r} (a folder, or {known})")
    if "@" in parts.netloc or parts.password is not None:
        raise ValueError(
            f"{scheme}:// URL with credentials in it: credentials come from the store's "
            "environment variables or provider chain, never from the URL"
        )
    if parts.query or parts.fragment or ":" in parts.netloc:
        raise ValueError(f"{shown}: a store URL has no port, query or fragment")
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{shown}: {bucket!r} is not a bucket name (3 to 222 characters: lower-case "
            "letters, digits, '.', '-', '_')"
        )
    segments = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    for segment in segments:
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise ValueError(
                f"{shown}: the prefix has an empty, '.' or '..' part, or a control "
                "character, backslash or '%' (write the key's characters as they are)"
            )
    return StoreUrl(scheme, bucket, "/".join(segments))


def location(value: object) -> object:
    """`out_dir` as given (a flag, the environment, TOML): a StoreUrl for a URL, else a
    folder with `~` expanded. Anything else is left to the model's type check."""
    if isinstance(value, str) and is_store_url(value):
        return parse_store_url(value)
    if isinstance(value, str) and _NEAR_URL.match(value) and not Path(value).exists():
        scheme = value.split(":")[0].split("/")[0].lower()
        shown = shown_url(value)
        raise ValueError(
            f"{shown!r} looks like a store URL missing its '://': write "
            f"{scheme}://bucket/prefix (or ./{shown} for a folder of that name)"
        )
    if isinstance(value, str | Path):
        return Path(value).expanduser()
    return value


def default_state_dir() -> Path:
    """`$XDG_STATE_HOME/osvi-archiver`, else `~/.local/state/osvi-archiver` (the XDG base
    directory specification's default)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "osvi-archiver"
