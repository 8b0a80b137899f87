"""`--since` / `--until` values (SPEC §2) into moments, and moments into the API's format.

Pure: `now` is passed in. Bare dates and `yesterday` are IST days, as the API reads dates.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from archiver.errors import UsageError

# India Standard Time: the API reads bare dates in it and writes its timestamps in it.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhd])$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0}
TIME_HELP = (
    "an ISO-8601 timestamp with offset (2026-06-01T09:00:00+05:30), a bare date read in IST "
    "(UTC+05:30) as the API does (a bare --until date includes that whole day), or a relative "
    "form: 90m, 24h, 7d, yesterday (the previous IST day), today"
)


def parse_moment(text: str, now: datetime, *, end: bool, flag: str) -> datetime:
    """A moment from one of the accepted forms; `end` makes a bare day mean its last instant."""
    value = text.strip().lower()
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


def api_time(moment: datetime) -> str:
    """The form sent as start_date/end_date: ISO-8601 in IST with an explicit offset."""
    return moment.astimezone(IST).isoformat()
