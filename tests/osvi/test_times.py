from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from archiver.errors import UsageError
from archiver.osvi.times import IST, api_time, parse_moment

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 07:30 IST


def moment(text: str, *, end: bool = False) -> datetime:
    return parse_moment(text, NOW, end=end, flag="--since")


def test_a_bare_date_is_an_ist_day() -> None:
    assert moment("2026-06-01") == datetime(2026, 6, 1, tzinfo=IST)
    assert moment("2026-06-01", end=True) == datetime(2026, 6, 2, tzinfo=IST) - timedelta(
        microseconds=1
    )


def test_relative_forms_count_back_from_now() -> None:
    assert moment("24h") == NOW - timedelta(hours=24)
    assert moment("7d") == NOW - timedelta(days=7)
    assert moment("90m") == NOW - timedelta(minutes=90)


def test_now_is_now() -> None:
    assert moment(" Now ", end=True) == NOW


def test_yesterday_and_today_are_ist_days() -> None:
    assert moment("yesterday") == datetime(2026, 11, 23, tzinfo=IST)
    assert moment("yesterday", end=True).date() == datetime(2026, 11, 23).date()
    assert moment("today") == datetime(2026, 11, 24, tzinfo=IST)


def test_timestamps_need_an_offset() -> None:
    assert moment("2026-06-01T10:00:00+05:30") == datetime(2026, 6, 1, 4, 30, tzinfo=UTC)
    assert moment("2026-06-01T10:00:00Z") == datetime(2026, 6, 1, 10, tzinfo=UTC)
    with pytest.raises(UsageError, match="UTC offset"):
        moment("2026-06-01T10:00:00")


@pytest.mark.parametrize("text", ["", "soon", "7w", "2026-13-01", "-1d"])
def test_anything_else_is_a_usage_error_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        moment(text)


def test_api_time_is_ist_with_its_offset() -> None:
    assert api_time(NOW) == "2026-11-24T07:30:00+05:30"


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("99999999999d", False),
        ("9" * 400 + "d", False),
        ("0001-01-01T00:00:00+14:00", False),
        ("0001-01-01", False),  # its IST midnight is in the year 0 in UTC
        ("9999-12-31T23:00:00Z", False),  # the year 10000 in IST
        ("9999-12-31T23:59:59-14:00", True),
    ],
)
def test_a_moment_outside_the_years_datetime_holds_is_a_usage_error(text: str, end: bool) -> None:
    with pytest.raises(UsageError, match=r"--since .* is out of range"):
        parse_moment(text, NOW, end=end, flag="--since")


def test_the_first_and_last_moments_that_exist_in_both_zones_are_taken() -> None:
    first = parse_moment("0001-01-01T00:00:00Z", NOW, end=False, flag="--since")
    assert api_time(first) == "0001-01-01T05:30:00+05:30"
    last = parse_moment("9999-12-31", NOW, end=True, flag="--until")
    assert api_time(last).startswith("9999-12-31T23:59:59")
