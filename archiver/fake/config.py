"""Knobs of the fake OSVI service: sizes, latency, bandwidth, URL lifetime and faults.

A fault hits a call when the call is listed explicitly or when a hash of (seed, kind, subject)
falls under its rate, so the same seed always faults the same calls. It fires `times` times per
call (1 by default, "once per call"), after which a correct client succeeds; `times=None` never
clears, for testing what happens when retries run out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    """Every fault the fake can inject; the value is the name used on the command line."""

    API_500 = "api-500"  # API answers 500
    API_503 = "api-503"  # API answers 503 with Retry-After
    API_429 = "api-429"  # API answers 429 with Retry-After
    REC_500 = "rec-500"  # recording host answers 500
    REC_503 = "rec-503"  # recording host answers 503 SlowDown with Retry-After
    RESET = "reset"  # recording body: connection reset (RST) after half the bytes
    CUT = "cut"  # recording body: connection closed cleanly after half the bytes
    STALL = "stall"  # recording body: silence for `stall_seconds` after half the bytes
    NOT_AUDIO = "not-audio"  # recording host answers 200 with an HTML page
    NOT_AVAILABLE = "not-available"  # a picked call whose recording never exists (404)
    PENDING = "pending"  # 404 for the first `pending_requests` asks, then available
    # Hostile or broken, for robustness tests (not in --all-faults):
    TRICKLE = "trickle"  # recording body: `trickle_rate` bytes a second, never silent for long
    ENDLESS = "endless"  # recording body: no Content-Length, and no end
    GZIP = "gzip"  # recording body gzip-encoded when the request accepts gzip
    API_ECHO = "api-echo"  # API answers 400 echoing the request's token, with ANSI escapes
    API_HUGE = "api-huge"  # API answers 200 with a JSON body of `huge_body` bytes


MIN_SIZE = 64  # a recording holds at least its MP4 box headers and some payload

# Faults that describe the call itself rather than one request: they ignore `times`.
CALL_PROPERTIES = frozenset({FaultKind.NOT_AVAILABLE, FaultKind.PENDING})
# What a hostile or broken host sends: never part of --all-faults, asked for by name.
HOSTILE = frozenset(
    {FaultKind.TRICKLE, FaultKind.ENDLESS, FaultKind.GZIP, FaultKind.API_ECHO, FaultKind.API_HUGE}
)
OMIT = "<omit>"  # in FakeConfig.expires_in: leave expires_in_seconds out of the answer
# How the listing's `meta` can lie (nothing about it is documented beyond its field names):
# honest; null (`"meta": null`); absent (no `meta` key); page-count (total_count and
# total_pages describe the page alone); inflated (a thousand times the calls there are).
LIST_META_MODES = ("honest", "null", "absent", "page-count", "inflated")


@dataclass(frozen=True)
class Fault:
    """Which calls a fault hits and how often it fires for each."""

    rate: float = 0.0
    calls: frozenset[str] = frozenset()
    times: int | None = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault times must be >= 1 or None, got {self.times}")

    def hits(self, seed: int, kind: FaultKind, subject: str) -> bool:
        """Whether this fault applies to `subject` (a call id, or a listing query)."""
        if subject in self.calls:
            return True
        if self.rate <= 0.0:
            return False
        digest = hashlib.sha256(f"{seed}:{kind}:{subject}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.rate


@dataclass
class FakeConfig:
    """Everything the fake can be told. Defaults describe a healthy service."""

    calls: int = 50
    seed: int = 1
    token: str = "fake-token-0001x"  # noqa: S105  (a fake's token, 16 characters like a real one)
    days: float = 7.0  # calls are spread over this many days before `end_time`
    end_time: float | None = None  # epoch seconds of the newest call; None = clock() at start
    size_min: int = 64 * 1024
    size_max: int = 512 * 1024
    api_latency: float = 0.0  # seconds before the API answers
    download_latency: float = 0.0  # seconds before the recording host sends headers
    bandwidth: float | None = None  # bytes/s per download stream; None = as fast as possible
    url_lifetime: int = 900  # expires_in_seconds of presigned URLs
    retry_after: str = "1"  # Retry-After sent with 429/503: seconds or an HTTP-date
    stall_seconds: float = 30.0
    pending_requests: int = 2  # a pending call's recording appears after this many asks
    api_rate_limit: float | None = None  # API requests per second above which it answers 429
    ignore_range: bool = False  # answer 200 with the whole body even when Range is sent
    content_type: str | None = "audio/mp4"  # None: send no Content-Type (client must sniff)
    multipart_etag: bool = False  # send an S3 multipart ETag ("<md5>-2"), not a plain MD5
    trickle_rate: float = 1.0  # bytes/s of a trickle fault
    huge_body: int = 300 << 20  # bytes of an api-huge answer
    # Bytes of `padding` in every call detail (GET /v1/call/{id}): a list of transcript-like
    # turns, the many small objects a large real detail holds (0: none).
    detail_padding: int = 0
    # A listing that lies (issue 20): its meta (LIST_META_MODES), a `page` it ignores (every
    # page is page 1), the next N answers to a page >= 2 repeating the page before it once,
    list_meta: str = "honest"
    list_ignore_page: bool = False
    list_repeat_pages: int = 0
    # and times shown without their UTC offset (IST wall time, as the API writes them), or
    # shifted by `time_shift` seconds (a server whose clock runs ahead: times in the future).
    naive_dates: bool = False
    time_shift: float = 0.0
    faults: dict[FaultKind, Fault] = field(default_factory=dict)
    # Per call, what a broken or hostile API or host sends (Python API only; tests):
    # the recording_url the API gives ({signed}: the real, signed one; {origin}: the host's),
    recording_urls: dict[str, str] = field(default_factory=dict)
    # expires_in_seconds as sent, any JSON value (NaN included), or OMIT,
    expires_in: dict[str, object] = field(default_factory=dict)
    # the Location the recording host answers 302 with ({signed}: the call's signed URL),
    redirects: dict[str, str] = field(default_factory=dict)
    # the fields the listing and GET /v1/call/{id} show as null (filters see the real ones),
    null_fields: dict[str, frozenset[str]] = field(default_factory=dict)
    # and the value the listing shows as the call's call_id (a number, a list, not a UUID).
    listed_ids: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calls < 0:
            raise ValueError("calls must be >= 0")
        if not MIN_SIZE <= self.size_min <= self.size_max:
            raise ValueError(f"need {MIN_SIZE} <= size_min <= size_max")
        if self.url_lifetime < 1:
            raise ValueError("url_lifetime must be >= 1 second")
        if self.list_meta not in LIST_META_MODES:
            raise ValueError(f"list_meta must be one of {', '.join(LIST_META_MODES)}")
        if self.list_repeat_pages < 0:
            raise ValueError("list_repeat_pages must be >= 0")
        if self.detail_padding < 0:
            raise ValueError("detail_padding must be >= 0")

    def fault(self, kind: FaultKind) -> Fault:
        return self.faults.get(kind, Fault())


def parse_fault(spec: str) -> tuple[FaultKind, Fault]:
    """Parse a command-line fault `KIND=RATE[:TIMES]`, TIMES a count or `always`.

    >>> parse_fault("reset=0.3")
    (<FaultKind.RESET: 'reset'>, Fault(rate=0.3, calls=frozenset(), times=1))
    """
    name, sep, value = spec.partition("=")
    if not sep:
        raise ValueError(f"fault {spec!r}: expected KIND=RATE[:TIMES]")
    try:
        kind = FaultKind(name.strip())
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"fault {spec!r}: unknown kind {name!r} (known: {known})") from None
    rate_text, _, times_text = value.partition(":")
    try:
        rate = float(rate_text)
        times = None if times_text == "always" else int(times_text or "1")
        return kind, Fault(rate=rate, times=times)
    except ValueError as exc:
        raise ValueError(f"fault {spec!r}: {exc}") from None
