"""What the API's answers hold, as plain values: a recording URL and how long it may be used,
a page of the listing, the text of an error, a JSON answer kept as it came. Pure: no session,
no I/O."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from archiver import redaction
from archiver.errors import ApiBadResponse, UrlExpired

SHOWN = 300  # characters of a server's error text shown in a message
MAX_LIFETIME = 7 * 86400.0  # the longest an S3 presigned URL can live
# A URL whose lifetime the API did not say is used at once: for its first request (and its
# redirects) within this many seconds of its arrival, and never again (every try asks anew).
UNKNOWN_LIFETIME_USE = 60.0


@dataclass(frozen=True, slots=True)
class RecordingUrl:
    call_id: str
    url: str
    expires_in: float | None  # seconds; None when the API did not say (lifetime_of)
    received_at: float  # clock() when the API answered

    def usable_until(self) -> float:
        """§5.1: never used once older than its lifetime minus min(60 s, lifetime / 4)."""
        if self.expires_in is None:
            return self.received_at + UNKNOWN_LIFETIME_USE
        return self.received_at + self.expires_in - min(60.0, self.expires_in / 4)


def lifetime_of(value: object, url: str) -> float | None:
    """`expires_in_seconds` as seconds, None when unknown. Missing or null: the URL's own
    `X-Amz-Expires` if it has one, else unknown; NaN, a bool or text that is not a number:
    unknown; 0 or less: already expired (UrlExpired: a fresh URL is asked); above 7 days (S3's
    longest), 7 days."""
    if value is None:
        value = _amz_expires(url)
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    if math.isnan(seconds):
        return None
    if seconds <= 0:
        raise UrlExpired(f"the API gave a URL that had already expired (expires_in {value!r})")
    return min(seconds, MAX_LIFETIME)


def _amz_expires(url: str) -> str | None:
    for pair in urlsplit(url).query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() == "x-amz-expires" and value.isascii() and value.isdigit():
            return value
    return None


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of `GET /v1/calls`. The `meta` numbers are hints only: the API documents
    nothing about them beyond their names and any of them may be null, absent, count the page
    alone or be inflated (None: not a usable count). The walk (osvi/listing.py) decides from the
    pages themselves."""

    items: list[dict[str, Any]]  # each with a canonical (lower-case UUID) call_id
    total_count: int | None = None
    # The call_id values that are not UUIDs (or items that are not objects), as shown.
    unusable: list[str] = field(default_factory=list)
    total_pages: int | None = None
    per_page: int | None = None

    @property
    def size(self) -> int:
        """Items on the page, usable or not."""
        return len(self.items) + len(self.unusable)


def count_of(value: object) -> int | None:
    """A `meta` number as a count: None for anything else (null, text, a bool, NaN, negative);
    at most 10**12."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return min(int(value), 10**12)


def error_text(body: bytes) -> str:
    """The message of either documented error shape, else the raw body (not yet masked or
    cut: `OsviApi._text` does both, in that order)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        if isinstance(parsed.get("errors"), list):
            return "; ".join(str(e) for e in parsed["errors"])
        if parsed.get("error") is not None:
            details = parsed.get("details")
            suffix = f" ({json.dumps(details, default=str)})" if details else ""
            return f"{parsed['error']}{suffix}"
    return body.decode("utf-8", "replace").strip() or "(empty body)"


def shown_text(body: bytes) -> str:
    """The error text of a body, shown: the token masked (should the server echo it) and
    control characters escaped before it is cut to SHOWN characters."""
    return redaction.shorten(error_text(body[: 64 << 10]), SHOWN)


def envelope_of(body: bytes) -> dict[str, Any]:
    """`{"success": true, "data": ...}`, the envelope of every answer; ApiBadResponse else."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiBadResponse(f"the API sent a body that is not JSON: {shown_text(body)}") from exc
    if not isinstance(parsed, dict) or parsed.get("success") is not True:
        raise ApiBadResponse(f"unexpected API envelope: {shown_text(body)}")
    if "data" not in parsed:
        raise ApiBadResponse(f"unexpected API envelope (no data): {shown_text(body)}")
    return parsed


@dataclass(frozen=True, slots=True)
class JsonAnswer:
    """An answer whose `data` is an object (a call's detail, its transcript), kept as the
    bytes that came (at most api.MAX_BODY) and parsed only when asked: parsed, a detail of
    MiBs of small objects takes many times its size, so whoever holds one parses it in its
    turn (api.OsviApi.parsing) and keeps none of it parsed across an await."""

    body: bytes
    what: str  # "call", "transcript": for messages

    def data(self) -> dict[str, Any]:
        data = envelope_of(self.body)["data"]
        if not isinstance(data, dict):
            raise ApiBadResponse(f"unexpected {self.what} response: data is not an object")
        return data
