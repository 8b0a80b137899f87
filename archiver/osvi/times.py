"""`--since` / `--until` values (SPEC §2) into moments, moments into the API's format, and
the API's own times into moments.

Pure: `now` is passed in. Bare dates and `yesterday` are IST days, as the API reads dates; a
time the API writes without an offset is IST too (said once per run).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from archiver.errors import UsageError

log = logging.getLogger("archiver.osvi.listing")

# India Standard Time: the API reads bare dates in it and writes its timestamps in it.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0}
TIME_HELP = (
    "an ISO-8601 timestamp with offset (2026-06-01T09:00:00+05:30), a bare date read in IST "
    "(UTC+05:30) as the API does (a bare --until date includes that whole day), or a relative "
    "form: 90m, 24h, 7d, yesterday (the previous IST day), today, now"
)


@dataclass(frozen=True)
class Span:
    """The window a command was asked for: `--since` and `--until` as given (None: not
    given), and the moment the command started, which bounds both: nothing is listed past
    `now` (calls can still arrive for a moment that has not come yet)."""

    since: datetime | None
    until: datetime | None
    now: datetime

    @property
    def end(self) -> datetime:
        """`--until`, never past now; now when not given."""
        return min(self.until, self.now) if self.until is not None else self.now


def parse_moment(text: str, now: datetime, *, end: bool, flag: str) -> datetime:
    """A moment from one of the accepted forms; `end` makes a bare day mean its last instant.
    A moment that cannot be written in UTC and in IST (the API's zone) is a usage error: past
    the year 9999, or before the year 1 (`0001-01-01T00:00:00+14:00`, `99999999999d`)."""
    try:
        moment = _moment(text, now, end=end, flag=flag)
        # Each raises OverflowError for a moment datetime cannot hold in that zone.
        moment.astimezone(UTC)
        moment.astimezone(IST)
    except (OverflowError, OSError):
        raise UsageError(
            f"{flag} {text!r} is out of range: a moment must fall between the years 1 and 9999 "
            "in UTC and in IST (UTC+05:30)"
        ) from None
    return moment


def _moment(text: str, now: datetime, *, end: bool, flag: str) -> datetime:
    value = text.strip().lower()
    if value == "now":
        return now
    if value in ("yesterday", "today"):
        day = now.astimezone(IST).date() - timedelta(days=1 if value == "yesterday" else 0)
        return _day_bound(day, end=end)
    relative = _RELATIVE.match(value)
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return _day_bound(date.fromisoformat(value), end=end)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected {TIME_HELP}") from None
    if moment.tzinfo is None:
        raise UsageError(f"{flag} {text!r}: a timestamp needs a UTC offset (e.g. +05:30 or Z)")
    return moment


def _day_bound(day: date, *, end: bool) -> datetime:
    start = datetime.combine(day, time.min, IST)
    return start + timedelta(days=1, microseconds=-1) if end else start


def utc_text(moment: datetime) -> str:
    """A moment as reports and messages write it: UTC, to the second, with Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_time(moment: datetime) -> str:
    """The form sent as start_date/end_date: ISO-8601 in IST with an explicit offset."""
    return moment.astimezone(IST).isoformat()


class NaiveTimes:
    """Times the API writes without a UTC offset (`2026-12-06T10:00:00`) are read in IST, the
    zone it documents for bare dates: said once per run (`reset` when a run starts), not once
    per call."""

    def __init__(self) -> None:
        self.told = False

    def reset(self) -> None:
        self.told = False

    def tell(self, value: str) -> None:
        if self.told:
            return
        self.told = True
        log.warning(
            "the API wrote a time without a UTC offset (%r): read in IST (UTC+05:30), the zone "
            "it documents for bare dates; said once per run",
            value[:40],
            extra={"event": "naive_time"},
        )


naive_times = NaiveTimes()


def api_moment(value: object) -> datetime | None:
    """A time the API wrote (call_picked_at, created_at), or None when it is not one. Without
    an offset it is an IST wall time (naive_times says so once)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        naive_times.tell(value)
        return moment.replace(tzinfo=IST)
    return moment
