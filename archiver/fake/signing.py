"""Presigned-style recording URLs: an expiry and an HMAC over path and expiry, checked on use.

Shaped like S3 SigV4 query strings (the X-Amz-* names the real API's URLs carry). One liberty:
`X-Amz-Date` keeps microseconds, so URL lifetimes of a second or two in tests expire exactly
when the client was told, not up to a second early.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import urlencode

_DATE_FORMAT = "%Y%m%dT%H%M%S.%fZ"


class UrlCheck(Enum):
    OK = "ok"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"


def _signature(key: bytes, path: str, amz_date: str, expires: int) -> str:
    message = f"GET\n{path}\n{amz_date}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def presign(key: bytes, origin: str, path: str, issued_at: float, lifetime: int) -> str:
    """A URL for `path` on `origin` that the recording host accepts for `lifetime` seconds."""
    amz_date = datetime.fromtimestamp(issued_at, UTC).strftime(_DATE_FORMAT)
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "FAKEACCESSKEY/20260101/ap-south-1/s3/aws4_request",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(lifetime),
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": _signature(key, path, amz_date, lifetime),
    }
    return f"{origin}{path}?{urlencode(query)}"


def check(key: bytes, path: str, query: dict[str, str], now: float) -> UrlCheck:
    """Signature first (a forged expiry must not read as merely expired), then expiry."""
    amz_date = query.get("X-Amz-Date", "")
    try:
        expires = int(query.get("X-Amz-Expires", ""))
        issued = datetime.strptime(amz_date, _DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return UrlCheck.BAD_SIGNATURE
    expected = _signature(key, path, amz_date, expires)
    if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
        return UrlCheck.BAD_SIGNATURE
    if now > issued + expires:
        return UrlCheck.EXPIRED
    return UrlCheck.OK
